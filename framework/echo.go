package framework

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// Echo sends the caller's audio and RFC 4733 digits straight back, packet
// for packet (the endpoint forwards to itself: nothing is decoded, no
// delay is added), until ctx ends (nil) or the caller hangs up
// (ErrHangup). It answers the call if needed. Digits are still reported.
//
// The reflection is set up before the answer: answered first, the leg
// would send silence from its 200 until the echo request came through
// (after the ACK), tens of milliseconds per call under load. Nothing is
// reflected before the answer: the caller learns where to send its audio
// from our answer (or from our 183's, when early media is on).
func (c *Call) Echo(ctx context.Context) error {
	if err := c.request(ctx, "echo", &echoReq{On: true}); err != nil {
		return err
	}
	if err := c.Answer(ctx); err != nil {
		_ = c.request(context.Background(), "echo", &echoReq{})
		return err
	}
	select {
	case <-ctx.Done():
		_ = c.request(context.Background(), "echo", &echoReq{})
		return nil
	case <-c.ctx.Done():
		return ErrHangup
	}
}

func (a *callActor) echo(ctx actor.Context, r *echoReq) {
	if !r.On {
		if a.echoStop != nil {
			a.echoStop()
			a.echoStop = nil
		}
		replyTo(ctx, r.ReplyAddr, nil)
		return
	}
	a.withFirstLeg(ctx, r.ReplyAddr, func(l *legRef) {
		switch {
		case a.bridged() || a.conf != nil:
			replyTo(ctx, r.ReplyAddr, ErrBridged)
		case a.echoStop != nil:
			replyTo(ctx, r.ReplyAddr, errors.New("echo already running"))
		default:
			ep := l.sig.Endpoint()
			a.echoStop = media.Bridge(ep, ep) // same codec both ways: a reflection
			replyTo(ctx, r.ReplyAddr, nil)
		}
	})
}
