package apps

import (
	"context"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// Echo answers and sends back everything the caller says (packets
// reflected untouched, as Asterisk's Echo() does) until the caller hangs
// up. If prompts is not nil it first says so.
func Echo(prompts *Prompts) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		if prompts != nil {
			if intro, err := prompts.Get("echo"); err == nil {
				if err := c.Play(ctx, intro); err != nil {
					return err
				}
			}
		}
		return c.Echo(ctx) // an echo never ends: this returns at hangup
	}
}

// Tone answers and plays a continuous tone at freq Hz until hangup.
func Tone(freq float64) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{freq}}))
	}
}
