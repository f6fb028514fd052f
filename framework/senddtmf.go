package framework

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// SendDTMFOptions configure SendDTMF. The zero value sends 100 ms digits
// with 100 ms gaps, the way the caller's peer negotiated.
type SendDTMFOptions struct {
	// Duration is how long each digit lasts (default 100 ms, at least
	// 40 ms as ITU-T Q.24 receivers need).
	Duration time.Duration
	// Gap is the pause after each digit (default 100 ms, at least 40 ms).
	Gap time.Duration
	// InBand sends tones in the audio even when the peer negotiated
	// telephone-event.
	InBand bool
}

// SendDTMF sends digits (0-9, *, #, A-D) to the caller and returns when
// they have been sent: as RFC 4733 telephone-events when the caller's peer
// negotiated them, otherwise as in-band dual tones played like a prompt
// (which fails with ErrBridged while Dial or Join own the caller's audio).
// Cancelling ctx stops after the current digit (RFC 4733) or at once
// (in-band).
func (c *Call) SendDTMF(ctx context.Context, digits string, opts SendDTMFOptions) error {
	if opts.Duration <= 0 {
		opts.Duration = 100 * time.Millisecond
	}
	if opts.Gap <= 0 {
		opts.Gap = 100 * time.Millisecond
	}
	opts.Duration = max(opts.Duration, 40*time.Millisecond)
	opts.Gap = max(opts.Gap, 40*time.Millisecond)
	for _, d := range digits {
		if _, ok := media.DTMFCode(d); !ok {
			return fmt.Errorf("framework: send dtmf: %q is not a DTMF digit", d)
		}
	}
	if digits == "" {
		return nil
	}
	if err := c.Answer(ctx); err != nil {
		return err
	}
	ep, err := c.callerEndpoint(ctx, "send dtmf")
	if err != nil {
		return err
	}
	if opts.InBand || ep.Config().DTMFPayloadType == 0 {
		srcs := make([]media.Source, 0, len(digits))
		for _, d := range digits {
			s, _ := audio.DTMFTone(d, opts.Duration, opts.Gap)
			srcs = append(srcs, s)
		}
		if err := c.Play(ctx, srcs...); err != nil {
			return wrapVerb("send dtmf in-band", err)
		}
		return nil
	}
	// The endpoint sends a queued digit's packet train (an update every
	// 20 ms, then three end packets) on its 20 ms clock; queue the next
	// digit once this one's train and the gap have passed.
	step := opts.Duration + 2*media.FrameDurationMs*time.Millisecond + opts.Gap
	t := time.NewTimer(0)
	defer t.Stop()
	for i, d := range digits {
		if i > 0 {
			t.Reset(step)
			select {
			case <-t.C:
			case <-ctx.Done():
				if c.ended() != nil {
					return wrapVerb("send dtmf", ErrHangup)
				}
				return wrapVerb("send dtmf", ctx.Err())
			case <-c.ctx.Done():
				return wrapVerb("send dtmf", ErrHangup)
			}
		} else {
			<-t.C
		}
		if err := ep.SendDTMF(d, opts.Duration); err != nil {
			return wrapVerb("send dtmf", err)
		}
	}
	// Return once the last digit has gone out.
	t.Reset(step - opts.Gap)
	select {
	case <-t.C:
		return nil
	case <-c.ctx.Done():
		return wrapVerb("send dtmf", ErrHangup)
	case <-ctx.Done():
		return wrapVerb("send dtmf", ctx.Err())
	}
}
