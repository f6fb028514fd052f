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

type holdReq struct {
	on    bool
	reply chan error
}

// holdDone is the outcome of a Hold or Unhold re-INVITE.
type holdDone struct {
	legID string
	on    bool
	err   error
	reply chan error
}

// onHoldDone publishes leg.held or leg.unheld and replies.
func (a *callActor) onHoldDone(m *holdDone) {
	if m.err == nil {
		typ := EventLegUnheld
		if m.on {
			typ = EventLegHeld
		}
		a.publish(m.legID, typ, HoldData{})
	}
	m.reply <- m.err
}

// Hold puts the caller on hold: a re-INVITE offering sendonly, so the
// caller's phone stops sending while the flow may still play to it (music
// on hold). It returns when the phone has answered; a refusal leaves the
// call as it was and returns the phone's status.
func (c *Call) Hold(ctx context.Context) error {
	r := &holdReq{on: true, reply: make(chan error, 1)}
	return c.request(ctx, "hold", r, r.reply)
}

// Unhold resumes two-way audio with the caller (re-INVITE sendrecv).
func (c *Call) Unhold(ctx context.Context) error {
	r := &holdReq{reply: make(chan error, 1)}
	return c.request(ctx, "unhold", r, r.reply)
}

func (a *callActor) hold(ctx actor.Context, r *holdReq) {
	a.withFirstLeg(r.reply, func(l *legRef) {
		h, ok := l.sig.(holdable)
		switch {
		case !ok:
			r.reply <- fmt.Errorf("hold: a %s leg cannot be held", l.sig.Kind())
			return
		case !l.answered:
			r.reply <- ErrNotAnswered
			return
		}
		sig, self, root := l.sig, ctx.Self(), ctx.ActorSystem().Root
		go func() {
			// The leg's re-INVITE ends early if the dialog ends.
			var err error
			if r.on {
				err = h.Hold(context.Background())
			} else {
				err = h.Unhold(context.Background())
			}
			root.Send(self, &holdDone{legID: sig.ID(), on: r.on, err: hangupIfEnded(sig, err), reply: r.reply})
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
