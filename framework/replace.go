package framework

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/sip"
)

// Attended transfer and call pickup replace one leg with another in place
// (RFC 3891): the new leg takes the old one's seat — its place in the
// conversation or room, its role as the caller — and the old leg is hung
// up. Two ways in:
//
//   - an INVITE with Replaces naming one of our dialogs (sip.Config's
//     OnReplace): the new caller is answered and takes the dialog's place;
//   - a REFER with Refer-To ...?Replaces= from a phone that has two calls
//     with us (its attended transfer): the party of the call the REFER
//     came on takes the place of the phone's leg in the other call, so the
//     two parties talk and the phone drops out.

// onReplace puts a new leg in the place of one of the call's legs.
func (a *callActor) onReplace(ctx actor.Context, m *legReplace) {
	old := a.legs[m.Old]
	sig := a.srv.legReg.sig(m.LegID)
	if a.ended || a.ending || old == nil || old.ended || sig == nil || (a.conf != nil && len(a.order) > 0 && a.order[0] == m.Old) {
		a.replaceFailed(ctx, m, errors.New("the leg to replace is gone"))
		return
	}
	l := a.addLeg(ctx, sig, true)
	id := m.LegID
	a.order = a.order[:len(a.order)-1] // addLeg appended it: take old's seat instead
	if i := slices.Index(a.order, m.Old); i >= 0 {
		a.order[i] = id
	}
	if i := slices.Index(a.conv, m.Old); i >= 0 {
		a.conv[i] = id
		a.convOpts[id] = a.convOpts[m.Old]
		delete(a.convOpts, m.Old)
	}
	if a.dial != nil && a.dial.legID == m.Old {
		a.dial.legID = id
	}
	l.tap = old.tap
	old.tap = nil
	a.rewire()
	a.publish(id, EventLegJoined, MoveData{From: m.From, To: "call:" + a.call.id})
	a.log.Info("leg replaced", "leg_id", id, "replaced", m.Old)
	ctx.Send(old.pid, &legHangup{})
	replyTo(ctx, m.ReplyAddr, nil)
}

func (a *callActor) replaceFailed(ctx actor.Context, m *legReplace, err error) {
	a.log.Warn("replace refused; hanging the new leg up", "leg_id", m.LegID, "replaced", m.Old, "error", err)
	a.srv.dropLeg(m.LegID)
	replyTo(ctx, m.ReplyAddr, err)
}

// onReplaceInvite is sip's OnReplace: an INVITE with Replaces. The new leg
// is answered, then handed to whoever holds the old one.
func (s *Server) onReplaceInvite(newLeg, old *sip.Leg) {
	e := s.legReg.get(old.ID())
	if e == nil {
		_ = newLeg.Reject(481, "Call/Transaction Does Not Exist")
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
		defer cancel()
		if err := newLeg.Answer(ctx); err != nil {
			s.log.Info("replace: the new leg was not answered", "leg_id", newLeg.ID(), "error", err)
			return
		}
		if h := e.holder.Load(); h != nil {
			s.legReg.add(newLeg) // it travels by ID
			s.root.Send(h, &legReplace{Old: old.ID(), LegID: newLeg.ID(), From: "invite-replaces"})
		}
	}()
}

// attendedTransfer handles a REFER with Replaces that came on leg m.legID:
// the other party of this call takes the place of the transferor's leg in
// the call the Replaces names.
func (a *callActor) attendedTransfer(ctx actor.Context, m *legTransfer, t *sip.Transfer) {
	data := TransferData{Target: m.Target, ReferredBy: m.ReferredBy}
	var other string
	if live := a.liveConv(); len(live) == 2 && slices.Contains(live, m.LegID) {
		other = live[0]
		if other == m.LegID {
			other = live[1]
		}
	}
	e := a.srv.legReg.get(m.ReplacesLeg)
	if a.ended || a.ending || other == "" || e == nil || m.ReplacesLeg == m.LegID || t == nil {
		a.publish(m.LegID, EventTransfer, data)
		replyTo(ctx, m.ReplyAddr, errors.New("attended transfer needs this call bridged and the replaced dialog to be one of ours"))
		return
	}
	data.Accepted = true
	a.publish(m.LegID, EventTransfer, data)
	replyTo(ctx, m.ReplyAddr, nil)
	l := a.legs[other]
	a.legs[m.LegID].releasing = true // its NOTIFY must go out before any BYE
	a.detachLeg(ctx, l)
	a.publish(other, EventLegMoved, MoveData{From: "call:" + a.call.id, To: "replaces:" + m.ReplacesLeg})
	// The holder of the replaced leg answers to the server's inbox, where
	// the goroutine below waits for it.
	rep := &legReplace{Old: m.ReplacesLeg, LegID: other, From: "call:" + a.call.id}
	w := a.srv.inbox.wait(rep)
	if h := e.holder.Load(); h != nil {
		ctx.Send(h, rep)
	} else {
		ctx.Send(a.srv.inbox.pid, &Reply{ReqID: rep.ReqID, Err: errData(ErrNoLeg)})
	}
	a.log.Info("attended transfer", "transferor", m.LegID, "party", other, "replaces", m.ReplacesLeg)
	self, root, transferor, legID := ctx.Self(), ctx.ActorSystem().Root, a.legs[m.LegID], m.LegID
	go func() {
		defer w.done()
		code := 200
		select {
		case r := <-w.ch:
			if r.Err != nil {
				code = 503
			}
		case <-time.After(10 * time.Second):
			code = 408
		}
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = t.Finish(fctx, code, "")
		cancel()
		// The transferor hangs up on the 200 NOTIFY; if it does not, we
		// release it.
		select {
		case <-transferor.sig.Done():
		case <-time.After(2 * time.Second):
			root.Send(self, &legCtl{LegID: legID, Op: opHangup})
		}
	}()
	a.afterLegGone(ctx, other, ErrLegMoved, "transferred")
}
