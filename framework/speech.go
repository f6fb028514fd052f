package framework

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// DetectSpeechOptions configure DetectSpeech. The zero value waits 5 s
// for speech and returns when it ends (at most 30 s later).
type DetectSpeechOptions struct {
	// Timeout is how long to wait for speech to start, counted from the
	// end of Prompt (default 5 s). Then DetectSpeech returns ErrNoInput.
	Timeout time.Duration
	// MaxDuration ends a long utterance: DetectSpeech returns when the
	// caller has spoken this long (default 30 s).
	MaxDuration time.Duration
	// Prompt, if set, is played first; the caller starting to speak
	// interrupts it (barge-in).
	Prompt media.Source
	// VAD tunes the detector (threshold, onset, hangover).
	VAD dsp.VADOptions
}

// Utterance is what DetectSpeech heard.
type Utterance struct {
	// Start is when the caller started speaking.
	Start time.Time
	// Duration is how long the speech lasted, up to the last voiced frame
	// (the hangover not included).
	Duration time.Duration
	// Complete is false when MaxDuration cut the utterance short.
	Complete bool
}

// DetectSpeech listens to the caller with a voice-activity detector
// (media.VAD) until they have said something and stopped — one
// utterance, its end found after the VAD's hangover (300 ms) — and returns
// it. While it listens, EventSpeaking and EventSilent are published on
// the call's event stream. It returns ErrNoInput when nobody spoke within
// Timeout, and ErrHangup or ctx's error as other verbs do. It listens
// alongside Listen and Record (it does not take the caller's sink) and in
// a conference; not during a transcoding Dial, which owns the sink.
func (c *Call) DetectSpeech(ctx context.Context, opts DetectSpeechOptions) (Utterance, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = 30 * time.Second
	}
	if err := c.Answer(ctx); err != nil {
		return Utterance{}, err
	}
	// The VAD runs on the media path: each change goes to this flow
	// directly (a node-local channel) and to the call actor, which
	// publishes it while the tap is in place.
	key := c.srv.objs.newKey("speech")
	ch := make(chan dsp.VADEvent, 8)
	vad := media.NewVAD(opts.VAD, func(ev dsp.VADEvent) {
		c.root.Send(c.pid, &speechChange{Key: key, Speaking: ev.Speaking, Duration: ev.Duration})
		select {
		case ch <- ev:
		default:
		}
	})
	started := time.Now()
	defer c.untap(key, false) // also if the request fails late
	if err := c.tap(ctx, "detect speech", key, vad, false); err != nil {
		return Utterance{}, err
	}

	var promptDone <-chan *Reply
	var prompt *playReq
	if opts.Prompt != nil {
		prompt = c.startPrompt(opts.Prompt)
		w := c.srv.inbox.wait(prompt)
		defer w.done()
		promptDone = w.ch
		c.root.Send(c.pid, prompt)
		defer c.root.Send(c.pid, &stopPlayReq{PlayID: prompt.ReqID})
		defer c.srv.objs.drop(prompt.SourceID)
	}
	timer := time.NewTimer(opts.Timeout)
	if prompt != nil {
		timer.Stop()
	}
	defer timer.Stop()
	var u Utterance
	speaking := false
	fail := func(err error) (Utterance, error) { return u, wrapVerb("detect speech", err) }
	for {
		select {
		case r := <-promptDone:
			promptDone = nil
			err := r.Err.Err()
			if errors.Is(err, ErrHangup) {
				return fail(ErrHangup)
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return fail(err)
			}
			if !speaking {
				timer.Reset(opts.Timeout)
			}
		case ev := <-ch:
			if ev.Speaking {
				if speaking {
					continue
				}
				speaking = true
				u.Start = started.Add(ev.At)
				if promptDone != nil {
					c.root.Send(c.pid, &stopPlayReq{PlayID: prompt.ReqID})
					promptDone = nil
				}
				timer.Reset(max(opts.MaxDuration-time.Since(u.Start), 0))
				continue
			}
			if speaking {
				u.Duration, u.Complete = ev.Duration, true
				return u, nil
			}
		case <-timer.C:
			if !speaking {
				return fail(ErrNoInput)
			}
			u.Duration = time.Since(u.Start)
			return u, nil
		case <-ctx.Done():
			if c.ended() != nil {
				return fail(ErrHangup)
			}
			return fail(ctx.Err())
		case <-c.ctx.Done():
			return fail(ErrHangup)
		}
	}
}

func (a *callActor) onSpeechChange(m *speechChange) {
	if !a.taps.has(m.Key) || a.ended || len(a.order) == 0 {
		return // the watch ended; a late change from the media path
	}
	legID := a.order[0]
	if m.Speaking {
		a.publish(legID, EventSpeaking, nil)
	} else {
		a.publish(legID, EventSilent, SpeechData{Duration: m.Duration})
	}
}
