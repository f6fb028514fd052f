package framework

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// onLegCtl runs a per-leg verb (Leg.Hangup, Mute, Hold, Tap) on one of
// the call's legs. Network work runs in a goroutine; the mailbox never
// waits.
func (a *callActor) onLegCtl(ctx actor.Context, m *legCtl) {
	sink, _ := a.srv.objs.take(m.SinkID).(media.Sink)
	l := a.legs[m.LegID]
	if l == nil || l.ended {
		replyTo(ctx, m.ReplyAddr, errNotHere)
		return
	}
	switch m.Op {
	case opHangup:
		ctx.Send(l.pid, &legHangup{ReplyAddr: m.ReplyAddr})
	case opMute, opUnmute:
		l.muted = m.Op == opMute
		l.sig.Endpoint().SetMuted(l.muted)
		typ := EventLegMuted
		if !l.muted {
			typ = EventLegUnmuted
		}
		a.publish(m.LegID, typ, nil)
		replyTo(ctx, m.ReplyAddr, nil)
	case opTaps:
		l.tap = sink
		a.applyTaps()
		replyTo(ctx, m.ReplyAddr, nil)
	case opHold, opUnhold:
		h, ok := l.sig.(holdable)
		if !ok {
			replyTo(ctx, m.ReplyAddr, fmt.Errorf("a %s leg cannot be held", l.sig.Kind()))
			return
		}
		if !l.answered {
			replyTo(ctx, m.ReplyAddr, ErrNotAnswered)
			return
		}
		on, sig, root, reply := m.Op == opHold, l.sig, ctx.ActorSystem().Root, m.ReplyAddr
		go func() {
			var err error
			if on {
				err = h.Hold(context.Background())
			} else {
				err = h.Unhold(context.Background())
			}
			replyTo(root, reply, hangupIfEnded(sig, err))
		}()
	default:
		replyTo(ctx, m.ReplyAddr, errors.New("not supported for a leg in a call"))
	}
}

// onMediaUpdate: a leg's transport renegotiated (re-INVITE, UPDATE). The
// conversation is rewired, because a codec change turns passthrough into
// transcoding or back; a changed direction is reported as held/unheld.
func (a *callActor) onMediaUpdate(m *legMediaUpdate) {
	l := a.legs[m.LegID]
	if l == nil || l.ended {
		return
	}
	held := m.Direction == "recvonly" || m.Direction == "inactive"
	if held != l.held {
		l.held = held
		typ := EventLegUnheld
		if held {
			typ = EventLegHeld
		}
		a.publish(m.LegID, typ, HoldData{Remote: true})
	}
	switch a.topo.kind {
	case topoBridge:
		x, y := a.legs[a.topo.legs[0]].sig.Endpoint(), a.legs[a.topo.legs[1]].sig.Endpoint()
		if a.topo.passthrough != passthrough(x, y) {
			// Forwarding packets between two codecs would relabel them,
			// not transcode: build the bridge anew.
			a.log.Info("leg renegotiated its codec; rebridging", "leg_id", m.LegID, "codec", m.Codec)
			a.teardown()
			a.rewire()
		}
	case topoMix:
		a.rewire() // the mix rate may change
	}
}
