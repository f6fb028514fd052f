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

// legReplace asks a leg's holder to put sig in old's place.
type legReplace struct {
	old   string
	sig   Signaling
	from  string
	reply chan error
}

// onReplace puts a new leg in the place of one of the call's legs.
func (a *callActor) onReplace(ctx actor.Context, m *legReplace) {
	old := a.legs[m.old]
	if a.ended || a.ending || old == nil || old.ended || (a.conf != nil && len(a.order) > 0 && a.order[0] == m.old) {
		a.replaceFailed(m, errors.New("the leg to replace is gone"))
		return
	}
	l := a.addLeg(ctx, m.sig, true)
	id := m.sig.ID()
	a.order = a.order[:len(a.order)-1] // addLeg appended it: take old's seat instead
	if i := slices.Index(a.order, m.old); i >= 0 {
		a.order[i] = id
	}
	if i := slices.Index(a.conv, m.old); i >= 0 {
		a.conv[i] = id
		a.convOpts[id] = a.convOpts[m.old]
		delete(a.convOpts, m.old)
	}
	if a.dial != nil && a.dial.legID == m.old {
		a.dial.legID = id
	}
	l.tap = old.tap
	old.tap = nil
	a.rewire()
	a.publish(id, EventLegJoined, MoveData{From: m.from, To: "call:" + a.call.id})
	a.log.Info("leg replaced", "leg_id", id, "replaced", m.old)
	ctx.Send(old.pid, &legHangup{reply: make(chan error, 1)})
	m.reply <- nil
}

func (a *callActor) replaceFailed(m *legReplace, err error) {
	a.log.Warn("replace refused; hanging the new leg up", "leg_id", m.sig.ID(), "replaced", m.old, "error", err)
	sig := m.sig
	go func() { _ = sig.Hangup(context.Background()) }()
	m.reply <- err
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
			s.root.Send(h, &legReplace{old: old.ID(), sig: newLeg, from: "invite-replaces", reply: make(chan error, 1)})
		}
	}()
}

// attendedTransfer handles a REFER with Replaces that came on leg m.legID:
// the other party of this call takes the place of the transferor's leg in
// the call the Replaces names.
func (a *callActor) attendedTransfer(ctx actor.Context, m *legTransfer) {
	data := TransferData{Target: m.t.Target, ReferredBy: m.t.ReferredBy}
	var other string
	if live := a.liveConv(); len(live) == 2 && slices.Contains(live, m.legID) {
		other = live[0]
		if other == m.legID {
			other = live[1]
		}
	}
	e := a.srv.legReg.get(m.t.ReplacesLeg)
	if a.ended || a.ending || other == "" || e == nil || m.t.ReplacesLeg == m.legID {
		a.publish(m.legID, EventTransfer, data)
		m.reply <- errors.New("attended transfer needs this call bridged and the replaced dialog to be one of ours")
		return
	}
	data.Accepted = true
	a.publish(m.legID, EventTransfer, data)
	m.reply <- nil
	l := a.legs[other]
	a.legs[m.legID].releasing = true // its NOTIFY must go out before any BYE
	a.detachLeg(ctx, l)
	a.publish(other, EventLegMoved, MoveData{From: "call:" + a.call.id, To: "replaces:" + m.t.ReplacesLeg})
	reply := make(chan error, 1)
	if h := e.holder.Load(); h != nil {
		ctx.Send(h, &legReplace{old: m.t.ReplacesLeg, sig: l.sig, from: "call:" + a.call.id, reply: reply})
	} else {
		reply <- ErrNoLeg
	}
	a.log.Info("attended transfer", "transferor", m.legID, "party", other, "replaces", m.t.ReplacesLeg)
	self, root, transferor := ctx.Self(), ctx.ActorSystem().Root, a.legs[m.legID]
	go func() {
		code := 200
		select {
		case err := <-reply:
			if err != nil {
				code = 503
			}
		case <-time.After(10 * time.Second):
			code = 408
		}
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.t.Finish(fctx, code, "")
		cancel()
		// The transferor hangs up on the 200 NOTIFY; if it does not, we
		// release it.
		select {
		case <-transferor.sig.Done():
		case <-time.After(2 * time.Second):
			root.Send(self, &legCtl{legID: m.legID, op: opHangup, reply: make(chan error, 1)})
		}
	}()
	a.afterLegGone(ctx, other, ErrLegMoved, "transferred")
}
