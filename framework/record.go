package framework

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
)

// RecordOptions configure Record. The zero value records up to 60 s and
// stops on a "#" pressed while it records.
type RecordOptions struct {
	// MaxDuration ends the recording (default 60 s).
	MaxDuration time.Duration
	// StopDigits end the recording when pressed (default "#"; "-" for
	// none). The digit is not part of the file.
	StopDigits string
	// KeepTypeAhead makes digits typed before Record started and not
	// consumed yet (the type-ahead, e.g. a "#" pressed during the
	// preceding prompt) count as stop digits, which then end the
	// recording at once. By default only digits pressed after Record
	// started stop it.
	KeepTypeAhead bool
	// Beep plays a short 1 kHz tone first, the way voicemail does.
	Beep bool
	// Stereo records both directions of the call into a 2-channel file:
	// the caller on the left, what the caller hears on the right — the
	// other party while Dial bridges them (same-codec bridges), prompts,
	// Say and in-band SendDTMF otherwise — aligned on a 20 ms clock, with
	// silence where a side sends nothing. It does not take the caller's
	// audio from Listen or DetectSpeech, so it can run (in a goroutine)
	// for the whole of a Dial.
	Stereo bool
}

// Record records what the caller says into a 16-bit PCM WAV file at path
// until MaxDuration, a stop digit, ctx, or hangup, and returns how much was
// recorded. Only digits pressed after recording started stop it (see
// RecordOptions.KeepTypeAhead). The file is valid whatever ends the recording — even a crash
// of the server (see audio.WAVRecorder). A hangup returns the duration
// with ErrHangup. A mono Record takes the caller's audio the way Listen
// does; a Stereo one listens beside it (see RecordOptions.Stereo).
//
// Digits: only digits pressed after Record started stop it. The stop
// digit, and every digit before it, is consumed (a later CollectDigits
// does not see them); when Record ends otherwise (MaxDuration, ctx),
// digits pressed while it recorded stay type-ahead for CollectDigits.
// Record reads digits from its own view of the call's event stream, so a
// CollectDigits running beside it (e.g. in another goroutine) sees the
// same digits and neither steals them from the other.
func (c *Call) Record(ctx context.Context, path string, opts RecordOptions) (time.Duration, error) {
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = time.Minute
	}
	switch opts.StopDigits {
	case "":
		opts.StopDigits = "#"
	case "-":
		opts.StopDigits = ""
	}
	if err := c.Answer(ctx); err != nil {
		return 0, err
	}
	// Stop digits are watched from here on, on the call's event stream:
	// Record has its own view of the digits, so a CollectDigits beside it
	// sees them too. Digits typed before Record started do not stop it.
	var digits <-chan Event
	if opts.StopDigits != "" {
		from := FromNow
		if opts.KeepTypeAhead {
			from = c.digitCursor.Load() + 1 // the digits not consumed yet
		}
		sub := c.stream.Subscribe(ctx, from)
		defer sub.Close()
		digits = sub.C()
	}
	if opts.Beep {
		if err := c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 250 * time.Millisecond})); err != nil {
			return 0, err
		}
	}
	ep, err := c.callerEndpoint(ctx, "record")
	if err != nil {
		return 0, err
	}
	rate := ep.Config().Codec.SampleRate // what the caller's frames carry
	if rate == 0 {
		rate = 8000
	}
	var rec interface {
		Close() error
		Duration() time.Duration
	}
	var stop func()
	if opts.Stereo {
		srec, err := audio.NewStereoRecorder(path, rate)
		if err != nil {
			return 0, wrapVerb("record", err)
		}
		rec = srec
		key := c.srv.objs.newKey("record")
		stop = func() {
			c.untap(key, false)
			c.untap(key, true)
		}
		if err := c.tap(ctx, "record", key, srec.Left(), false); err != nil {
			stop()
			_ = srec.Close()
			return 0, err
		}
		if err := c.tap(ctx, "record", key, srec.Right(), true); err != nil {
			stop()
			_ = srec.Close()
			return 0, err
		}
	} else {
		mrec, err := audio.NewWAVRecorder(path, rate)
		if err != nil {
			return 0, wrapVerb("record", err)
		}
		rec = mrec
		if err := c.Listen(ctx, mrec); err != nil {
			_ = mrec.Close()
			return 0, err
		}
		stop = func() { _ = c.Listen(context.Background(), nil) }
	}
	timer := time.NewTimer(opts.MaxDuration)
	defer timer.Stop()
	var end error
loop:
	for {
		select {
		case <-timer.C:
			break loop
		case ev, ok := <-digits:
			if !ok {
				digits = nil // the stream ended: the call is ending too
				continue
			}
			if d, isDigit := digitOf(ev); isDigit && strings.ContainsRune(opts.StopDigits, d) {
				// The stop digit is consumed: it does not reach the next
				// CollectDigits as type-ahead (nor do digits before it).
				c.consumeDigits(ev.Seq)
				break loop
			}
		case <-c.ctx.Done():
			end = ErrHangup
			break loop
		case <-ctx.Done():
			end = ctx.Err()
			if c.ctx.Err() != nil {
				end = ErrHangup // the flow's ctx ends with the call
			}
			break loop
		}
	}
	if end == nil || !errors.Is(end, ErrHangup) {
		stop()
	}
	cerr := rec.Close()
	d := rec.Duration()
	if end != nil {
		return d, wrapVerb("record", end)
	}
	if cerr != nil {
		return d, cerr
	}
	return d, nil
}
