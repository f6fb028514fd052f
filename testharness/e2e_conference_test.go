package testharness_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Three phones join one room, each saying its own tone: each hears the
// other two and not itself. When one hangs up, the others stop hearing it.
func TestConferenceThreeParties(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Join(ctx, "room", framework.JoinOptions{})
	}))
	h := testharness.New(t, srv)
	freqs := []float64{500, 1100, 1700}
	var calls []*testharness.Call
	for i, f := range freqs {
		p := h.Phone(testharness.PhoneOptions{RTPPortMin: 44000 + 1000*i, RTPPortMax: 44999 + 1000*i})
		call := h.Call("conf", testharness.HarnessCallOptions{Name: fmt.Sprintf("party %d", i), Phone: p})
		call.Play(audio.NewTone(audio.Tone{Freqs: []float64{f}, Amplitude: 5000}))
		calls = append(calls, call)
	}
	time.Sleep(1500 * time.Millisecond)
	for i, c := range calls {
		for j, f := range freqs {
			share := c.ToneShare(0, f)
			if i == j && share > 0.05 {
				t.Errorf("party %d hears itself: %.0f Hz share %.2f", i, f, share)
			}
			if i != j && share < 0.2 {
				t.Errorf("party %d does not hear party %d: %.0f Hz share %.2f", i, j, f, share)
			}
		}
	}
	// Party 2 leaves; 0 and 1 stop hearing 1700 Hz.
	calls[2].End()
	mark := calls[0].Mark()
	calls[0].ExpectAbsent("party 0 still hears the party that left", 1700, 0.05, 1200*time.Millisecond)
	if share := calls[0].ToneShare(mark, 1100); share < 0.5 {
		t.Errorf("party 0 lost party 1 after party 2 left: share %.2f", share)
	}
	calls[0].End()
	calls[1].End()
	h.ExpectIdle()
}

// Drop-out: the flow takes the caller out of the room (ctx ends) and goes
// on with the call.
func TestConferenceDropOut(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		jctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := c.Join(jctx, "room", framework.JoinOptions{}); err == nil || ctx.Err() != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 10 * time.Second}))
	}))
	h := testharness.New(t, srv)
	h.Call("conf", testharness.HarnessCallOptions{}).ExpectTone(700) // back with the flow after leaving the room
}
