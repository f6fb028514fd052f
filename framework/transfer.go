package framework

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/sip"
)

// EventTransfer is published when a leg asks for a blind transfer (SIP
// REFER); Data is a TransferData.
const EventTransfer = "transfer"

// TransferData is the Data of an EventTransfer event.
type TransferData struct {
	Target     string `json:"target"`
	ReferredBy string `json:"referred_by,omitempty"`
	Accepted   bool   `json:"accepted"`
	// Outcome is the final SIP status of the transfer, set on the event
	// published when it ends (0 on the first event).
	Outcome int `json:"outcome,omitempty"`
}

type (
	// legTransfer: a leg received REFER; reply says accept (nil) or decline.
	legTransfer struct {
		legID string
		t     *sip.Transfer
		reply chan error
	}
	transferResult struct {
		from     string // the transferring leg
		stays    string // the transferee, bridged to the target
		byCaller bool   // the caller transferred the dialled party
		t        *sip.Transfer
		leg      Signaling
		err      error
	}
	transferReq struct {
		target string
		reply  chan error
	}
)

// transferable is what a leg needs for blind transfer; sip.Leg has it.
type transferable interface {
	OnTransfer(fn func(*sip.Transfer) error)
	Refer(ctx context.Context, target string) error
}

// onLegTransfer decides on a REFER. Either party of a call Dial bridged
// may transfer the other elsewhere — what a PBX user does when they pass
// a call on. The target is dialled; when it answers, the party that stays
// (the transferee) is bridged to it and the transferring leg is released.
// When the caller transfers, the dialled party takes the caller's place
// as the call's first leg. A REFER on a call that is not bridged (the
// caller asking to transfer the flow itself) is declined.
func (a *callActor) onLegTransfer(ctx actor.Context, m *legTransfer) {
	if m.t.Replaces != nil {
		a.attendedTransfer(ctx, m)
		return
	}
	data := TransferData{Target: m.t.Target, ReferredBy: m.t.ReferredBy}
	st := a.dial
	bridged := !a.ended && !a.ending && st != nil && a.bridged() && !st.transferring
	byDialled := bridged && st.legID == m.legID
	byCaller := bridged && len(a.order) > 0 && a.order[0] == m.legID
	if !byDialled && !byCaller {
		a.publish(m.legID, EventTransfer, data)
		m.reply <- errors.New("only a party of a bridged call can transfer it")
		return
	}
	data.Accepted = true
	a.publish(m.legID, EventTransfer, data)
	m.reply <- nil
	st.transferring = true
	opts := st.req.opts
	opts.Trunk = "" // Refer-To is a SIP URI
	stays := a.order[0]
	if byCaller {
		// The target is told who it is connected to: the transferee.
		stays = st.legID
		opts.CallerID = presentedCallerID(DialOptions{}, callerOf(a.legs[stays].sig))
	}
	self, root, srv := ctx.Self(), ctx.ActorSystem().Root, a.srv
	a.log.Info("transfer: dialling the target", "from_leg", m.legID, "target", m.t.Target, "by_caller", byCaller)
	go func() {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.t.Progress(tctx, 100, "Trying"); err != nil {
			a.log.Debug("transfer: NOTIFY 100 failed", "error", err)
		}
		cancel()
		dctx, cancel := context.WithTimeout(context.Background(), timeoutOr(opts.Timeout, 30*time.Second)+5*time.Second)
		defer cancel()
		leg, err := srv.dialLeg(dctx, m.t.Target, opts)
		root.Send(self, &transferResult{from: m.legID, stays: stays, byCaller: byCaller, t: m.t, leg: leg, err: err})
	}()
}

func timeoutOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (a *callActor) onTransferResult(ctx actor.Context, m *transferResult) {
	st := a.dial
	// The transfer still applies if the transferor is still bridged to the
	// transferee by the same dial.
	current := st != nil && len(a.order) > 0 && a.legs[m.from] != nil && !a.legs[m.from].ended
	if current && m.byCaller {
		current = a.order[0] == m.from && st.legID == m.stays
	} else if current {
		current = st.legID == m.from
	}
	if st != nil && (st.legID == m.from || st.legID == m.stays) {
		st.transferring = false
	}
	if m.err != nil {
		code := 503
		var se *sip.StatusError
		if errors.As(m.err, &se) {
			code = se.Code
		}
		a.log.Info("transfer: target did not answer", "target", m.t.Target, "error", m.err)
		a.publish(m.from, EventTransfer, TransferData{Target: m.t.Target, Accepted: true, Outcome: code})
		a.finishTransfer(m.t, code, "", nil)
		return
	}
	if a.ended || a.ending || !current {
		// A party went while the target rang.
		go func() { _ = m.leg.Hangup(context.Background()) }()
		a.finishTransfer(m.t, 487, "Request Terminated", nil)
		return
	}
	old := a.legs[m.from]
	old.transferred = true
	a.convRemove(m.from)
	if m.byCaller {
		// The transferee becomes the call's first leg; the caller leaves
		// the order (it stays in legs until it has ended) and keeps only
		// its own taps: Listen and the call's taps follow the first leg.
		order := []string{m.stays}
		for _, id := range a.order {
			if id != m.stays && id != m.from {
				order = append(order, id)
			}
		}
		a.order = order
		old.sig.Endpoint().SetTaps(old.tap)
	}
	a.addLeg(ctx, m.leg, true)
	a.bridgeDialled(st, m.leg)
	a.publish(m.from, EventTransfer, TransferData{Target: m.t.Target, Accepted: true, Outcome: 200})
	a.log.Info("transfer: transferee bridged to the target", "leg_id", m.leg.ID(), "transferee", m.stays, "released", m.from)
	// The transferor hangs up when it reads the 200 NOTIFY; if it does not,
	// we release it.
	root := ctx.ActorSystem().Root
	a.finishTransfer(m.t, 200, "OK", func() {
		select {
		case <-old.sig.Done():
		case <-time.After(2 * time.Second):
			root.Send(old.pid, &legHangup{reply: make(chan error, 1)})
		}
	})
}

// finishTransfer sends the transfer's final NOTIFY from a goroutine (the
// actor never waits on the network), then runs then, if set.
func (a *callActor) finishTransfer(t *sip.Transfer, code int, reason string, then func()) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := t.Finish(ctx, code, reason); err != nil {
			a.log.Debug("transfer: final NOTIFY failed", "error", err)
		}
		if then != nil {
			then()
		}
	}()
}

// Transfer hands the caller to target with a blind transfer: the caller's
// phone is asked (SIP REFER) to call target itself. Transfer waits for the
// phone's report; when the target answers, our leg is hung up and Transfer
// returns nil (the flow should then return). On failure the call stays
// up with the flow and the error carries the target's SIP status.
func (c *Call) Transfer(ctx context.Context, target string) error {
	r := &transferReq{target: target, reply: make(chan error, 1)}
	if err := c.request(ctx, "transfer "+target, r, r.reply); err != nil {
		return err
	}
	return c.Hangup(ctx)
}

func (a *callActor) startTransfer(ctx actor.Context, r *transferReq) {
	a.withFirstLeg(r.reply, func(l *legRef) {
		tr, ok := l.sig.(transferable)
		switch {
		case !ok:
			r.reply <- fmt.Errorf("transfer: a %s leg cannot be transferred", l.sig.Kind())
			return
		case !l.answered:
			r.reply <- ErrNotAnswered
			return
		case a.dial != nil || a.conf != nil:
			r.reply <- ErrBridged
			return
		}
		a.log.Info("transfer: asking the caller to call the target (REFER)", "target", r.target)
		sig := l.sig
		go func() {
			tctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r.reply <- sipCause(hangupIfEnded(sig, tr.Refer(tctx, r.target)))
		}()
	})
}
