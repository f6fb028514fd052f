package framework

import (
	"context"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// Taps are extra sinks on a call's audio, beside the sink that Listen,
// a conference or a bridge own: on what the caller says (DetectSpeech's
// VAD, a stereo recording's left channel) and on what the caller hears
// (a stereo recording's right channel). The call actor composes them
// with media.Tee whenever they or the topology change; the media path
// pays one call per tap per frame and never allocates.

// tapSet is a set of sinks kept in the order they were added.
type tapSet struct {
	sinks map[string]media.Sink
	order []string
}

func (t *tapSet) has(key string) bool { _, ok := t.sinks[key]; return ok }

func (t *tapSet) set(key string, s media.Sink) {
	if s == nil {
		if t.has(key) {
			delete(t.sinks, key)
			for i, k := range t.order {
				if k == key {
					t.order = append(t.order[:i], t.order[i+1:]...)
					break
				}
			}
		}
		return
	}
	if t.sinks == nil {
		t.sinks = map[string]media.Sink{}
	}
	if !t.has(key) {
		t.order = append(t.order, key)
	}
	t.sinks[key] = s
}

// tee returns base and the taps as one sink (nil if there is none).
func (t *tapSet) tee(base media.Sink) media.Sink {
	sinks := make([]media.Sink, 0, 1+len(t.order))
	sinks = append(sinks, base)
	for _, k := range t.order {
		sinks = append(sinks, t.sinks[k])
	}
	return media.Tee(sinks...)
}

func (a *callActor) onTapReq(ctx actor.Context, m *tapReq) {
	sink, _ := a.srv.objs.take(m.SinkID).(media.Sink)
	if m.Heard {
		a.heardTaps.set(m.Key, sink)
	} else {
		a.taps.set(m.Key, sink)
	}
	if a.ended || len(a.order) == 0 || a.legs[a.order[0]].ended {
		replyTo(ctx, m.ReplyAddr, ErrHangup)
		return
	}
	a.applyTaps()
	replyTo(ctx, m.ReplyAddr, nil)
}

// tap sets (sink non-nil) or removes the tap under key on the caller:
// on what the caller says or, with heard, on what they hear.
func (c *Call) tap(ctx context.Context, verb, key string, sink media.Sink, heard bool) error {
	m := &tapReq{Key: key, SinkID: c.srv.objs.put(sink), Heard: heard}
	defer c.srv.objs.drop(m.SinkID)
	return c.request(ctx, verb, m)
}

// untap removes the tap under key without waiting.
func (c *Call) untap(key string, heard bool) {
	c.root.Send(c.pid, &tapReq{Key: key, Heard: heard})
}

// heardSwitch is the sink every playback to the caller copies its frames
// to (see heardSource); the actor swaps it, the media path loads it.
type heardSwitch struct{ p atomic.Pointer[sinkHolder] }

type sinkHolder struct{ s media.Sink }

func (h *heardSwitch) set(s media.Sink) {
	if s == nil {
		h.p.Store(nil)
		return
	}
	h.p.Store(&sinkHolder{s})
}

// heardSource plays src and gives each frame to the heard taps too.
type heardSource struct {
	src media.Source
	sw  *heardSwitch
}

func (h *heardSource) ReadFrame(f *media.Frame) error {
	err := h.src.ReadFrame(f)
	if err == nil {
		if s := h.sw.p.Load(); s != nil {
			_ = s.s.WriteFrame(f)
		}
	}
	return err
}

// passthrough reports whether media.Bridge forwards packets between a and
// b (same codec and clock) rather than transcoding through their sinks.
func passthrough(a, b *media.Endpoint) bool {
	ca, cb := a.Config(), b.Config()
	return ca.Codec.Name == cb.Codec.Name && ca.Codec.ClockRate == cb.Codec.ClockRate
}
