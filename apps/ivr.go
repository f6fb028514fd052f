package apps

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// IVR is the demo menu: 1 plays a 1 kHz tone, 2 runs the echo test, 3 reads
// back the digits the caller types (ended with #).
type IVR struct {
	Prompts *Prompts
	// ToneDuration is how long option 1 plays its tone (default 5 s).
	ToneDuration time.Duration
	// OnChoice, if set, is told every menu choice (for logging and tests).
	OnChoice func(c *framework.Call, choice string)
}

// ServeCall runs the menu until the caller hangs up or fails to choose
// three times.
func (m *IVR) ServeCall(ctx context.Context, c *framework.Call) error {
	toneLen := m.ToneDuration
	if toneLen <= 0 {
		toneLen = 5 * time.Second
	}
	if err := c.Answer(ctx); err != nil {
		return err
	}
	misses := 0
	for misses < 3 {
		welcome, err := m.Prompts.Get("welcome")
		if err != nil {
			return err
		}
		choice, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 1, Prompt: welcome, FirstDigitTimeout: 5 * time.Second})
		switch {
		case errors.Is(err, framework.ErrNoInput):
			misses++
			if err := m.say(ctx, c, "no-input"); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		c.Logger().Info("ivr: menu choice", "digit", choice)
		if m.OnChoice != nil {
			m.OnChoice(c, choice)
		}
		switch choice {
		case "1":
			err = c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: toneLen}))
		case "2":
			if err = m.say(ctx, c, "echo"); err == nil {
				err = c.Echo(ctx)
			}
		case "3":
			err = m.readBack(ctx, c)
		default:
			misses++
			err = m.say(ctx, c, "invalid")
		}
		if err != nil {
			return err
		}
	}
	if err := m.say(ctx, c, "goodbye"); err != nil {
		return err
	}
	return c.Hangup(ctx)
}

func (m *IVR) readBack(ctx context.Context, c *framework.Call) error {
	prompt, err := m.Prompts.Get("digits")
	if err != nil {
		return err
	}
	digits, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 20, Terminators: "#", Prompt: prompt,
		FirstDigitTimeout: 10 * time.Second, InterDigitTimeout: 5 * time.Second})
	if errors.Is(err, framework.ErrNoInput) || (err == nil && digits == "") {
		return m.say(ctx, c, "no-input")
	}
	if err != nil {
		return err
	}
	names := []string{"you-entered"}
	for _, d := range digits {
		names = append(names, DigitName(d))
	}
	srcs, err := m.Prompts.Sources(names...)
	if err != nil {
		return err
	}
	return c.Play(ctx, srcs...)
}

func (m *IVR) say(ctx context.Context, c *framework.Call, name string) error {
	p, err := m.Prompts.Get(name)
	if err != nil {
		return err
	}
	return c.Play(ctx, p)
}
