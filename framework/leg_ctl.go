package framework

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
)

// onLegCtl runs a per-leg verb (Leg.Hangup, Mute, Hold, Tap) on one of
// the call's legs. Network work runs in a goroutine; the mailbox never
// waits.
func (a *callActor) onLegCtl(ctx actor.Context, m *legCtl) {
	l := a.legs[m.legID]
	if l == nil || l.ended {
		m.reply <- errNotHere
		return
	}
	switch m.op {
	case opHangup:
		ctx.Send(l.pid, &legHangup{reply: m.reply})
	case opMute, opUnmute:
		l.muted = m.op == opMute
		l.sig.Endpoint().SetMuted(l.muted)
		typ := EventLegMuted
		if !l.muted {
			typ = EventLegUnmuted
		}
		a.publish(m.legID, typ, nil)
		m.reply <- nil
	case opTaps:
		l.tap = m.sink
		a.applyTaps()
		m.reply <- nil
	case opHold, opUnhold:
		h, ok := l.sig.(holdable)
		if !ok {
			m.reply <- fmt.Errorf("a %s leg cannot be held", l.sig.Kind())
			return
		}
		if !l.answered {
			m.reply <- ErrNotAnswered
			return
		}
		on, sig := m.op == opHold, l.sig
		go func() {
			var err error
			if on {
				err = h.Hold(context.Background())
			} else {
				err = h.Unhold(context.Background())
			}
			m.reply <- hangupIfEnded(sig, err)
		}()
	default:
		m.reply <- errors.New("not supported for a leg in a call")
	}
}

// onMediaUpdate: a leg's transport renegotiated (re-INVITE, UPDATE). The
// conversation is rewired, because a codec change turns passthrough into
// transcoding or back; a changed direction is reported as held/unheld.
func (a *callActor) onMediaUpdate(m *legMediaUpdate) {
	l := a.legs[m.legID]
	if l == nil || l.ended {
		return
	}
	held := m.cfg.Direction == "recvonly" || m.cfg.Direction == "inactive"
	if held != l.held {
		l.held = held
		typ := EventLegUnheld
		if held {
			typ = EventLegHeld
		}
		a.publish(m.legID, typ, HoldData{Remote: true})
	}
	switch a.topo.kind {
	case topoBridge:
		x, y := a.legs[a.topo.legs[0]].sig.Endpoint(), a.legs[a.topo.legs[1]].sig.Endpoint()
		if a.topo.passthrough != passthrough(x, y) {
			// Forwarding packets between two codecs would relabel them,
			// not transcode: build the bridge anew.
			a.log.Info("leg renegotiated its codec; rebridging", "leg_id", m.legID, "codec", m.cfg.Codec.Name)
			a.teardown()
			a.rewire()
		}
	case topoMix:
		a.rewire() // the mix rate may change
	}
}
