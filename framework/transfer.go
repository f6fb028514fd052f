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
		from string // the transferring leg
		t    *sip.Transfer
		leg  Signaling
		err  error
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

// onLegTransfer decides on a REFER. The party a Dial bridged to the caller
// may transfer the caller elsewhere — what a PBX user does when they pass
// a call on: the target is dialled, and when it answers the caller is
// bridged to it and the transferring leg is released. Other transfers
// (the caller asking to transfer the flow itself) are declined.
func (a *callActor) onLegTransfer(ctx actor.Context, m *legTransfer) {
	if m.t.Replaces != nil {
		a.attendedTransfer(ctx, m)
		return
	}
	data := TransferData{Target: m.t.Target, ReferredBy: m.t.ReferredBy}
	st := a.dial
	if a.ended || a.ending || st == nil || st.legID != m.legID || !a.bridged() || st.transferring {
		a.publish(m.legID, EventTransfer, data)
		m.reply <- errors.New("only the dialled party of a bridged call can transfer it")
		return
	}
	data.Accepted = true
	a.publish(m.legID, EventTransfer, data)
	m.reply <- nil
	st.transferring = true
	opts := st.req.opts
	self, root, srv := ctx.Self(), ctx.ActorSystem().Root, a.srv
	a.log.Info("transfer: dialling the target", "from_leg", m.legID, "target", m.t.Target)
	go func() {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.t.Progress(tctx, 100, "Trying"); err != nil {
			a.log.Debug("transfer: NOTIFY 100 failed", "error", err)
		}
		cancel()
		dctx, cancel := context.WithTimeout(context.Background(), timeoutOr(opts.Timeout, 30*time.Second)+5*time.Second)
		defer cancel()
		opts.Trunk = "" // Refer-To is a SIP URI
		leg, err := srv.dialLeg(dctx, m.t.Target, opts)
		root.Send(self, &transferResult{from: m.legID, t: m.t, leg: leg, err: err})
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
	if st != nil && st.legID == m.from {
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
	if a.ended || a.ending || st == nil || st.legID != m.from {
		// The caller or the transferor went while the target rang.
		go func() { _ = m.leg.Hangup(context.Background()) }()
		a.finishTransfer(m.t, 487, "Request Terminated", nil)
		return
	}
	a.convRemove(m.from)
	a.addLeg(ctx, m.leg, true)
	a.bridgeDialled(st, m.leg)
	a.publish(m.from, EventTransfer, TransferData{Target: m.t.Target, Accepted: true, Outcome: 200})
	a.log.Info("transfer: caller bridged to the target", "leg_id", m.leg.ID(), "released", m.from)
	// The transferor hangs up when it reads the 200 NOTIFY; if it does not,
	// we release it.
	old := a.legs[m.from]
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
			r.reply <- hangupIfEnded(sig, tr.Refer(tctx, r.target))
		}()
	})
}
