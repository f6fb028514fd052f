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
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callA, err := a.Call(ctx, uri(srv, "bridge"))
	if err != nil {
		t.Fatalf("A's call: %v", err)
	}
	var callB *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("B was never called")
	}
	callA.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	if _, err := callB.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("B does not hear A: %v", err)
	}
	if _, err := callA.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("A does not hear B: %v", err)
	}
	if err := callA.SendDTMF("42"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "B to receive A's digits", func() bool { return callB.Digits() == "42" })

	if err := callB.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-dialErr:
		if err != nil {
			t.Fatalf("Dial returned %v after the far end hung up, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return")
	}
	if _, err := callA.WaitTone(ctx, 700, 20); err != nil {
		t.Fatalf("caller not back with the flow after B hung up: %v", err)
	}
	_ = callA.Hangup(ctx)
	waitFor(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
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
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Call(ctx, uri(srv, "busy")); err != nil {
		t.Fatal(err)
	}
	if err := <-results; !errors.Is(err, framework.ErrBusy) {
		t.Fatalf("dial to a busy phone: %v, want ErrBusy", err)
	}
	// The caller hears ringback while the far end rings, then hangs up.
	call, err := a.Call(ctx, uri(srv, "slow"))
	if err != nil {
		t.Fatal(err)
	}
	if l, err := call.WaitFor(ctx, 200*time.Millisecond, func(l testharness.Listen) bool {
		return l.RMS > 300 && (l.Frequency > 430 && l.Frequency < 490)
	}); err != nil {
		t.Fatalf("no ringback while dialing: %v (%+v)", err, l)
	}
	_ = call.Hangup(ctx)
	select {
	case err := <-results:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("dial after caller hangup: %v, want ErrHangup", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return after the caller hung up")
	}
	waitFor(t, 10*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
}
