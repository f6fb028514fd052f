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
	t, _ := a.srv.objs.take(m.TransferID).(*sip.Transfer)
	if m.Attended {
		a.attendedTransfer(ctx, m, t)
		return
	}
	data := TransferData{Target: m.Target, ReferredBy: m.ReferredBy}
	st := a.dial
	bridged := !a.ended && !a.ending && st != nil && a.bridged() && !st.transferring
	byDialled := bridged && st.legID == m.LegID
	byCaller := bridged && len(a.order) > 0 && a.order[0] == m.LegID
	if !byDialled && !byCaller || t == nil {
		a.publish(m.LegID, EventTransfer, data)
		replyTo(ctx, m.ReplyAddr, errors.New("only a party of a bridged call can transfer it"))
		return
	}
	data.Accepted = true
	a.publish(m.LegID, EventTransfer, data)
	replyTo(ctx, m.ReplyAddr, nil)
	st.transferring = true
	opts := st.opts
	opts.Trunk = "" // Refer-To is a SIP URI
	stays := a.order[0]
	if byCaller {
		// The target is told who it is connected to: the transferee.
		stays = st.legID
		opts.CallerID = presentedCallerID(DialOptions{}, callerOf(a.legs[stays].sig))
	}
	self, root, srv := ctx.Self(), ctx.ActorSystem().Root, a.srv
	a.log.Info("transfer: dialling the target", "from_leg", m.LegID, "target", m.Target, "by_caller", byCaller)
	from, log := m.LegID, a.log
	go func() {
		tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := t.Progress(tctx, 100, "Trying"); err != nil {
			log.Debug("transfer: NOTIFY 100 failed", "error", err)
		}
		cancel()
		dctx, cancel := context.WithTimeout(context.Background(), timeoutOr(opts.Timeout, 30*time.Second)+5*time.Second)
		defer cancel()
		leg, err := srv.dialLeg(dctx, t.Target, opts)
		r := &transferResult{From: from, Stays: stays, ByCaller: byCaller, TransferID: srv.objs.put(t), Target: t.Target, Err: errData(err)}
		if err == nil {
			r.LegID = srv.legReg.add(leg).id // the leg travels by ID
		}
		root.Send(self, r)
	}()
}

func timeoutOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (a *callActor) onTransferResult(ctx actor.Context, m *transferResult) {
	t, _ := a.srv.objs.take(m.TransferID).(*sip.Transfer)
	if t == nil {
		a.srv.dropLeg(m.LegID)
		return
	}
	st := a.dial
	// The transfer still applies if the transferor is still bridged to the
	// transferee by the same dial.
	current := st != nil && len(a.order) > 0 && a.legs[m.From] != nil && !a.legs[m.From].ended
	if current && m.ByCaller {
		current = a.order[0] == m.From && st.legID == m.Stays
	} else if current {
		current = st.legID == m.From
	}
	if st != nil && (st.legID == m.From || st.legID == m.Stays) {
		st.transferring = false
	}
	leg := a.srv.legReg.sig(m.LegID)
	if m.Err != nil || leg == nil {
		err := m.Err.Err()
		if err == nil {
			err = ErrHangup // the target's leg ended on its way here
		}
		code := 503
		var se *sip.StatusError
		if errors.As(err, &se) {
			code = se.Code
		}
		a.log.Info("transfer: target did not answer", "target", m.Target, "error", err)
		a.publish(m.From, EventTransfer, TransferData{Target: m.Target, Accepted: true, Outcome: code})
		a.finishTransfer(t, code, "", nil)
		return
	}
	if a.ended || a.ending || !current {
		// A party went while the target rang.
		a.srv.dropLeg(m.LegID)
		a.finishTransfer(t, 487, "Request Terminated", nil)
		return
	}
	old := a.legs[m.From]
	old.transferred = true
	a.convRemove(m.From)
	if m.ByCaller {
		// The transferee becomes the call's first leg; the caller leaves
		// the order (it stays in legs until it has ended) and keeps only
		// its own taps: Listen and the call's taps follow the first leg.
		order := []string{m.Stays}
		for _, id := range a.order {
			if id != m.Stays && id != m.From {
				order = append(order, id)
			}
		}
		a.order = order
		old.sig.Endpoint().SetTaps(old.tap)
	}
	a.addLeg(ctx, leg, true)
	a.bridgeDialled(st, leg)
	a.publish(m.From, EventTransfer, TransferData{Target: m.Target, Accepted: true, Outcome: 200})
	a.log.Info("transfer: transferee bridged to the target", "leg_id", m.LegID, "transferee", m.Stays, "released", m.From)
	// The transferor hangs up when it reads the 200 NOTIFY; if it does not,
	// we release it.
	root := ctx.ActorSystem().Root
	a.finishTransfer(t, 200, "OK", func() {
		select {
		case <-old.sig.Done():
		case <-time.After(2 * time.Second):
			root.Send(old.pid, &legHangup{})
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
	if err := c.request(ctx, "transfer "+target, &transferReq{Target: target}); err != nil {
		return err
	}
	return c.Hangup(ctx)
}

func (a *callActor) startTransfer(ctx actor.Context, r *transferReq) {
	a.withFirstLeg(ctx, r.ReplyAddr, func(l *legRef) {
		tr, ok := l.sig.(transferable)
		switch {
		case !ok:
			replyTo(ctx, r.ReplyAddr, fmt.Errorf("transfer: a %s leg cannot be transferred", l.sig.Kind()))
			return
		case !l.answered:
			replyTo(ctx, r.ReplyAddr, ErrNotAnswered)
			return
		case a.dial != nil || a.conf != nil:
			replyTo(ctx, r.ReplyAddr, ErrBridged)
			return
		}
		a.log.Info("transfer: asking the caller to call the target (REFER)", "target", r.Target)
		sig, root, target, reply := l.sig, ctx.ActorSystem().Root, r.Target, r.ReplyAddr
		go func() {
			tctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			replyTo(root, reply, sipCause(hangupIfEnded(sig, tr.Refer(tctx, target))))
		}()
	})
}
