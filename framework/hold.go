package framework

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
)

// holdable is what a leg needs for Hold/Unhold; sip.Leg has it.
type holdable interface {
	Hold(ctx context.Context) error
	Unhold(ctx context.Context) error
}

// onHoldDone publishes leg.held or leg.unheld and replies.
func (a *callActor) onHoldDone(ctx actor.Context, m *holdDone) {
	if m.Err == nil {
		typ := EventLegUnheld
		if m.On {
			typ = EventLegHeld
		}
		a.publish(m.LegID, typ, HoldData{})
	}
	replyWith(ctx, m.ReplyAddr, &Reply{Err: m.Err})
}

// Hold puts the caller on hold: a re-INVITE offering sendonly, so the
// caller's phone stops sending while the flow may still play to it (music
// on hold). It returns when the phone has answered; a refusal leaves the
// call as it was and returns the phone's status.
func (c *Call) Hold(ctx context.Context) error {
	return c.request(ctx, "hold", &holdReq{On: true})
}

// Unhold resumes two-way audio with the caller (re-INVITE sendrecv).
func (c *Call) Unhold(ctx context.Context) error {
	return c.request(ctx, "unhold", &holdReq{})
}

func (a *callActor) hold(ctx actor.Context, r *holdReq) {
	a.withFirstLeg(ctx, r.ReplyAddr, func(l *legRef) {
		h, ok := l.sig.(holdable)
		switch {
		case !ok:
			replyTo(ctx, r.ReplyAddr, fmt.Errorf("hold: a %s leg cannot be held", l.sig.Kind()))
			return
		case !l.answered:
			replyTo(ctx, r.ReplyAddr, ErrNotAnswered)
			return
		}
		sig, self, root, on, reply := l.sig, ctx.Self(), ctx.ActorSystem().Root, r.On, r.ReplyAddr
		go func() {
			// The leg's re-INVITE ends early if the dialog ends.
			var err error
			if on {
				err = h.Hold(context.Background())
			} else {
				err = h.Unhold(context.Background())
			}
			root.Send(self, &holdDone{LegID: sig.ID(), On: on, Err: errData(hangupIfEnded(sig, err)), ReplyAddr: reply})
		}()
	})
}

// hangupIfEnded reports a failed in-dialog request on a leg that has
// ended meanwhile as ErrHangup, like every other verb: the request failed
// because the call is gone, and the leg's own error only says how.
func hangupIfEnded(sig Signaling, err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-sig.Done():
		return ErrHangup
	default:
		return err
	}
}
