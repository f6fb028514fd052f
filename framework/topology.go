package framework

import (
	"slices"

	"github.com/switchboard-voice/switchboard/media"
)

// A call's conversation is the set of its legs that talk to each other:
// the caller, the party a Dial bridged, and legs moved into the call. The
// call actor wires it (rewire) whenever that set, a leg's mode or a leg's
// codec changes:
//
//   - fewer than two legs: nothing; the flow plays to and listens to the
//     caller;
//   - two legs in plain mode: media.Bridge — passthrough when the codecs
//     match, transcoding otherwise;
//   - three or more legs, or anyone muted by mode (Monitor) or whispering:
//     a mixer of the call's own, at 16 kHz (48 kHz when an Opus leg takes
//     part), where each leg hears the others according to its mode.
//
// Rewiring tears the old topology down and builds the new one in the same
// actor turn, so a leg misses at most one 20 ms frame.

type topoKind uint8

const (
	topoNone topoKind = iota
	topoBridge
	topoMix
)

// topology is the current wiring of the conversation.
type topology struct {
	kind        topoKind
	legs        []string // the legs it wires, in conversation order
	unbridge    func()
	passthrough bool
	mix         *callMix
}

// callMix is the call's own mixer and its members.
type callMix struct {
	mixer   *media.Mixer
	members map[string]*mixMember
}

type mixMember struct {
	part *media.Participant
	stop func()
	opts JoinOptions
}

// convAdd puts a leg into the conversation (or updates its options).
func (a *callActor) convAdd(id string, opts JoinOptions) {
	if !slices.Contains(a.conv, id) {
		if len(a.order) > 0 && id == a.order[0] {
			a.conv = slices.Insert(a.conv, 0, id) // the caller leads
		} else {
			a.conv = append(a.conv, id)
		}
	}
	if a.convOpts == nil {
		a.convOpts = map[string]JoinOptions{}
	}
	a.convOpts[id] = opts
}

// convRemove takes a leg out of the conversation.
func (a *callActor) convRemove(id string) {
	a.conv = slices.DeleteFunc(a.conv, func(s string) bool { return s == id })
	delete(a.convOpts, id)
}

// bridged reports whether the caller's audio belongs to the conversation
// (a bridge or the call's mixer) rather than to the flow.
func (a *callActor) bridged() bool { return a.topo.kind != topoNone }

// liveConv returns the conversation's legs that are still up, in order
// (the caller first when it takes part).
func (a *callActor) liveConv() []string {
	var out []string
	for _, id := range a.conv {
		if l := a.legs[id]; l != nil && !l.ended {
			out = append(out, id)
		}
	}
	return out
}

// rewire makes the media topology match the conversation.
func (a *callActor) rewire() {
	live := a.liveConv()
	if a.ended || len(live) < 2 {
		a.teardown()
		a.applyTaps()
		return
	}
	needMix := len(live) > 2
	for _, id := range live {
		if o := a.convOpts[id]; o.Mode == ModeMonitor || o.Mode == ModeWhisper || o.Muted {
			needMix = true
		}
	}
	if !needMix {
		if a.topo.kind == topoBridge && slices.Equal(a.topo.legs, live) {
			a.applyTaps()
			return
		}
		a.teardown()
		x, y := a.legs[live[0]].sig.Endpoint(), a.legs[live[1]].sig.Endpoint()
		a.topo = topology{kind: topoBridge, legs: live, passthrough: passthrough(x, y), unbridge: media.Bridge(x, y)}
		a.applyTaps()
		return
	}
	eps := make([]*media.Endpoint, len(live))
	for i, id := range live {
		eps[i] = a.legs[id].sig.Endpoint()
	}
	rate := mixRate(eps)
	if a.topo.kind != topoMix || a.topo.mix.mixer.Rate() != rate {
		a.teardown()
		a.topo = topology{kind: topoMix, mix: &callMix{mixer: media.NewMixer(rate), members: map[string]*mixMember{}}}
	}
	mx := a.topo.mix
	for id, m := range mx.members {
		if !slices.Contains(live, id) {
			mx.mixer.Remove(m.part)
			m.stop()
			if l := a.legs[id]; l != nil {
				l.sig.Endpoint().SetSink(nil)
			}
			delete(mx.members, id)
		}
	}
	for _, id := range live {
		m := mx.members[id]
		if m == nil {
			m = &mixMember{part: mx.mixer.Add()}
			ep := a.legs[id].sig.Endpoint()
			var src media.Source = m.part
			if len(a.order) > 0 && id == a.order[0] {
				src = &heardSource{src: m.part, sw: &a.heard} // the mix, to the heard taps too
			}
			ep.SetSink(m.part)
			m.stop = ep.Play(src, nil)
			mx.members[id] = m
		}
		m.opts = a.convOpts[id]
	}
	for _, id := range live {
		m := mx.members[id]
		m.part.SetMuted(m.opts.Muted || m.opts.Mode == ModeMonitor)
		var audience *media.Participant
		if m.opts.Mode == ModeWhisper {
			if c := mx.members[m.opts.Coach]; c != nil {
				audience = c.part
			} else {
				m.part.SetMuted(true) // the coached leg is gone: heard by nobody
			}
		}
		m.part.SetAudience(audience)
	}
	a.topo.legs = live
	a.applyTaps()
}

// teardown undoes the current topology.
func (a *callActor) teardown() {
	switch a.topo.kind {
	case topoBridge:
		a.topo.unbridge()
	case topoMix:
		for id, m := range a.topo.mix.members {
			a.topo.mix.mixer.Remove(m.part)
			m.stop()
			if l := a.legs[id]; l != nil {
				l.sig.Endpoint().SetSink(nil)
			}
		}
		a.topo.mix.mixer.Close()
	}
	a.topo = topology{}
}

// mixRate is the rate a mix runs at: 16 kHz, or the highest codec rate
// among eps (48 kHz when an Opus leg takes part).
func mixRate(eps []*media.Endpoint) int {
	rate := 16000
	for _, ep := range eps {
		rate = max(rate, ep.Config().Codec.SampleRate)
	}
	return rate
}

// applyTaps gives every leg's endpoint its observers: for the caller,
// Listen's sink and the call's taps; for the party bridged to the caller,
// the heard taps (what it says is what the caller hears); for every leg,
// its own Leg.Tap.
func (a *callActor) applyTaps() {
	if a.ended {
		return
	}
	s := a.heardTaps.tee(nil)
	a.heard.set(s)
	var other string
	if a.topo.kind == topoBridge && len(a.order) > 0 && a.topo.legs[0] == a.order[0] {
		other = a.topo.legs[1]
	}
	for i, id := range a.order {
		l := a.legs[id]
		if l == nil || l.ended {
			continue
		}
		var sinks []media.Sink
		if i == 0 {
			sinks = append(sinks, a.taps.tee(a.listen))
		}
		if id == other {
			sinks = append(sinks, s)
		}
		sinks = append(sinks, l.tap)
		l.sig.Endpoint().SetTaps(media.Tee(sinks...))
	}
}
