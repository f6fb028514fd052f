package framework

import (
	"context"
	"errors"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

type echoReq struct {
	on    bool
	reply chan error
}

// Echo sends the caller's audio and RFC 4733 digits straight back, packet
// for packet (the endpoint forwards to itself: nothing is decoded, no
// delay is added), until ctx ends (nil) or the caller hangs up
// (ErrHangup). It answers the call if needed. Digits are still reported.
func (c *Call) Echo(ctx context.Context) error {
	if err := c.Answer(ctx); err != nil {
		return err
	}
	start := &echoReq{on: true, reply: make(chan error, 1)}
	if err := c.request(ctx, "echo", start, start.reply); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		stop := &echoReq{reply: make(chan error, 1)}
		_ = c.request(context.Background(), "echo", stop, stop.reply)
		return nil
	case <-c.ctx.Done():
		return ErrHangup
	}
}

func (a *callActor) echo(_ actor.Context, r *echoReq) {
	if !r.on {
		if a.echoStop != nil {
			a.echoStop()
			a.echoStop = nil
		}
		r.reply <- nil
		return
	}
	a.withFirstLeg(r.reply, func(l *legRef) {
		switch {
		case a.bridged() || a.conf != nil:
			r.reply <- ErrBridged
		case a.echoStop != nil:
			r.reply <- errors.New("echo already running")
		default:
			ep := l.sig.Endpoint()
			a.echoStop = media.Bridge(ep, ep) // same codec both ways: a reflection
			r.reply <- nil
		}
	})
}
