package testharness_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Phone A calls the server, whose flow dials phone B and bridges them:
// audio flows both ways, DTMF passes through, and when B hangs up the
// caller stays on the call with the flow.
func TestDialBridgesTwoPhones(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, AnswerDelay: 300 * time.Millisecond})
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
		dialErr <- err
		if err != nil {
			return err
		}
		// B is gone; the caller is still ours.
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 10 * time.Second}))
	}))
	h := testharness.New(t, srv)
	h.Own(b)
	callA := h.Call("bridge", testharness.HarnessCallOptions{Name: "A"})
	callB := h.ExpectIncoming(b, "B")
	callA.PlayTone(440, 0)
	callB.PlayTone(1000, 0)
	callB.ExpectTone(440)
	callA.ExpectTone(1000)
	callA.Press("42")
	callB.ExpectDigits("42")
	callB.HangUp()
	if err := testharness.Await(h, dialErr, "Dial to return after B hung up"); err != nil {
		t.Fatalf("Dial returned %v after the far end hung up, want nil", err)
	}
	callA.ExpectTone(700) // the caller is back with the flow
	callA.HangUp()
	h.ExpectIdle()
}

func TestDialBusyAndCallerHangupDuringRinging(t *testing.T) {
	busy := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, RejectCode: 486})
	slow := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999, AnswerDelay: time.Hour})
	results := make(chan error, 2)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		target := busy.URI("bob")
		if c.User() == "slow" {
			target = slow.URI("carol")
		}
		err := c.Dial(ctx, target, framework.DialOptions{})
		results <- err
		return err
	}))
	h := testharness.New(t, srv)
	h.Own(busy, slow)
	h.Call("busy", testharness.HarnessCallOptions{})
	if err := testharness.Await(h, results, "Dial to the busy phone to return"); !errors.Is(err, framework.ErrBusy) {
		t.Fatalf("dial to a busy phone: %v, want ErrBusy", err)
	}
	// The caller hears ringback while the far end rings, then hangs up.
	call := h.Call("slow", testharness.HarnessCallOptions{Name: "the caller"})
	call.ExpectToneBetween(430, 490) // ringback: 440 + 480 Hz
	call.HangUp()
	if err := testharness.Await(h, results, "Dial to return after the caller hung up"); !errors.Is(err, framework.ErrHangup) {
		t.Fatalf("dial after caller hangup: %v, want ErrHangup", err)
	}
	h.ExpectIdle()
}
