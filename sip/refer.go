package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Transfer is a REFER the far end sent us (RFC 3515): it asks us to call
// Target. We accepted it with 202; Progress and Finish report how the new
// call goes, as NOTIFYs carrying a message/sipfrag status line, which the
// transferor waits for before it hangs up.
type Transfer struct {
	// Target is the Refer-To URI without its angle brackets and header
	// parameters.
	Target string
	// ReferredBy is the Referred-By header value, if any.
	ReferredBy string
	// Replaces is set for an attended transfer: the dialog the transfer
	// target's new call replaces. ReplacesLeg is the ID of our leg for
	// that dialog when it is one of ours ("" otherwise).
	Replaces    *Replaces
	ReplacesLeg string

	leg      *Leg
	id       string        // the subscription's event id: the REFER's CSeq number
	accepted chan struct{} // closed once the 202 is out: NOTIFYs follow it
}

// Progress sends a non-final NOTIFY ("SIP/2.0 180 Ringing").
func (t *Transfer) Progress(ctx context.Context, code int, reason string) error {
	return t.notify(ctx, code, reason, false)
}

// Finish sends the final NOTIFY: 200 when the transfer target answered,
// its error status otherwise. It ends the implicit subscription.
func (t *Transfer) Finish(ctx context.Context, code int, reason string) error {
	return t.notify(ctx, code, reason, true)
}

func (t *Transfer) notify(ctx context.Context, code int, reason string, final bool) error {
	select {
	case <-t.accepted:
	case <-ctx.Done():
		return ctx.Err()
	}
	if reason == "" {
		reason = defaultReason(code)
	}
	req := sip.NewRequest(sip.NOTIFY, t.leg.remoteTarget())
	req.AppendHeader(sip.NewHeader("Event", "refer;id="+t.id))
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reason)))
	if _, err := t.leg.inDialog(ctx, req); err != nil {
		return fmt.Errorf("sip: NOTIFY for REFER: %w", err)
	}
	return nil
}

// OnTransfer sets the callback for REFER requests in the leg's dialog. It
// runs on the request's goroutine before the REFER is answered: returning
// nil accepts it (202, then the callee reports through Progress and
// Finish), an error declines it with 603. It may block briefly (it waits
// for the call's decision) but must not wait for the transfer itself.
// Without a callback REFER is declined.
func (l *Leg) OnTransfer(fn func(*Transfer) error) {
	l.mu.Lock()
	l.onTransfer = fn
	l.mu.Unlock()
}

func (a *Agent) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	hs := req.GetHeaders("Refer-To")
	if len(hs) != 1 {
		l.log.Warn("sip: REFER without exactly one Refer-To", "count", len(hs))
		a.respond(req, tx, 400, "Bad Request (Refer-To)")
		return
	}
	target, params, err := parseReferTo(hs[0].Value())
	if err != nil {
		l.log.Warn("sip: REFER with a bad Refer-To", "refer_to", hs[0].Value(), "error", err)
		a.respond(req, tx, 400, "Bad Request (Refer-To)")
		return
	}
	rep, hasReplaces, err := replacesInReferTo(params)
	if err != nil {
		l.log.Warn("sip: REFER with a bad Replaces", "refer_to", hs[0].Value(), "error", err)
		a.respond(req, tx, 400, "Bad Request (Replaces)")
		return
	}
	l.mu.Lock()
	fn, st := l.onTransfer, l.state
	l.mu.Unlock()
	if st != LegAnswered {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if fn == nil {
		l.log.Info("sip: REFER declined: nothing handles transfers on this call", "refer_to", target)
		a.respond(req, tx, 603, "Decline")
		return
	}
	t := &Transfer{Target: target, leg: l, id: strconv.FormatUint(uint64(req.CSeq().SeqNo), 10), accepted: make(chan struct{})}
	if hasReplaces {
		// Attended transfer: the transferor asks that the party it
		// talks to here take the place of its other call.
		t.Replaces = &rep
		if other := a.LegFor(rep); other != nil {
			t.ReplacesLeg = other.ID()
		}
	}
	if h := req.GetHeader("Referred-By"); h != nil {
		t.ReferredBy = h.Value()
	}
	if err := fn(t); err != nil {
		l.log.Info("sip: REFER declined", "refer_to", target, "reason", err)
		a.respond(req, tx, 603, "Decline")
		return
	}
	a.respond(req, tx, 202, "Accepted")
	close(t.accepted)
	l.log.Info("sip: transfer accepted (REFER)", "refer_to", target, "referred_by", t.ReferredBy)
}

// parseReferTo splits a Refer-To value ("<sip:bob@host?Replaces=...>;p=1"
// or a bare URI) into the target URI and the URI headers and parameters.
func parseReferTo(v string) (target, extra string, err error) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return "", "", errors.New("unterminated <")
		}
		extra = v[i+j+1:]
		v = v[i+1 : i+j]
	} else if i := strings.IndexByte(v, ';'); i >= 0 {
		v, extra = v[:i], v[i:]
	}
	if i := strings.IndexByte(v, '?'); i >= 0 {
		extra = v[i:] + extra
		v = v[:i]
	}
	var u sip.Uri
	if err := sip.ParseUri(v, &u); err != nil {
		return "", "", err
	}
	if s := strings.ToLower(u.Scheme); s != "sip" && s != "sips" && s != "tel" {
		return "", "", fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	return v, extra, nil
}

// Refer asks the far end to call target itself (blind transfer, RFC 3515
// and RFC 5589) and waits until the NOTIFYs report the outcome: nil when
// the target answered, a *StatusError with its status when it did not,
// ctx's error on timeout. The leg stays up either way; the transferor
// normally hangs up after a success.
func (l *Leg) Refer(ctx context.Context, target string) error {
	if l.State() != LegAnswered {
		return errors.New("sip: REFER on a leg that is not answered")
	}
	if _, _, err := parseReferTo(target); err != nil {
		return fmt.Errorf("sip: REFER target %q: %w", target, err)
	}
	result := make(chan int, 4)
	l.mu.Lock()
	if l.referResult != nil {
		l.mu.Unlock()
		return errors.New("sip: a REFER is already pending on this leg")
	}
	l.referResult = result
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.referResult = nil
		l.mu.Unlock()
	}()
	req := sip.NewRequest(sip.REFER, l.remoteTarget())
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+target+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+l.agent.contactFor(l.ip, l.transport()).Address.String()+">"))
	if _, err := l.inDialog(ctx, req); err != nil {
		return fmt.Errorf("sip: REFER: %w", err)
	}
	l.log.Info("sip: REFER accepted", "target", target)
	for {
		select {
		case code := <-result:
			switch {
			case code < 200:
				continue
			case code < 300:
				return nil
			default:
				return fmt.Errorf("sip: transfer to %s: %w", target, statusError(code, "from NOTIFY"))
			}
		case <-l.done:
			// A transferee that hangs up right after its new call answers
			// may not send the final NOTIFY first.
			return fmt.Errorf("sip: transfer to %s: %w", target, l.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// onNotify takes the NOTIFYs of a REFER we sent (Event: refer, a sipfrag
// body) and answers every in-dialog NOTIFY 200.
func (a *Agent) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ev := ""
	if h := req.GetHeader("Event"); h != nil {
		ev = strings.ToLower(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]))
	}
	if ev != "refer" {
		a.respond(req, tx, 489, "Bad Event")
		return
	}
	code, ok := sipfragStatus(req.Body())
	if !ok {
		l.log.Warn("sip: NOTIFY with a malformed sipfrag", "body", string(req.Body()))
		a.respond(req, tx, 400, "Bad Request (sipfrag)")
		return
	}
	a.respond(req, tx, 200, "OK")
	l.mu.Lock()
	ch := l.referResult
	l.mu.Unlock()
	if ch != nil {
		select {
		case ch <- code:
		case <-time.After(time.Second):
		}
	}
}

// sipfragStatus reads the status code of a message/sipfrag body's status
// line ("SIP/2.0 200 OK").
func sipfragStatus(body []byte) (int, bool) {
	line, _, _ := strings.Cut(string(body), "\n")
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "SIP/") {
		return 0, false
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 100 || code > 699 {
		return 0, false
	}
	return code, true
}
