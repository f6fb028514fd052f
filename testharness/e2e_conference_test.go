package testharness_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Three phones join one room, each saying its own tone: each hears the
// other two and not itself. When one hangs up, the others stop hearing it.
func TestConferenceThreeParties(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Join(ctx, "room", framework.JoinOptions{})
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	freqs := []float64{500, 1100, 1700}
	var calls []*testharness.PhoneCall
	for i, f := range freqs {
		p, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 44000 + 1000*i, RTPPortMax: 44999 + 1000*i, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		call, err := p.Call(ctx, uri(srv, "conf"))
		if err != nil {
			t.Fatal(err)
		}
		call.Play(media.NewTone(media.Tone{Freqs: []float64{f}, Amplitude: 5000}))
		calls = append(calls, call)
	}
	power := func(c *testharness.PhoneCall, from int, f float64) float64 {
		s, rate := c.Heard(from)
		if len(s) > 8000 {
			s = s[len(s)-8000:]
		}
		return media.GoertzelPower(s, rate, f) / (media.RMS(s)*media.RMS(s) + 1)
	}
	time.Sleep(1500 * time.Millisecond)
	for i, c := range calls {
		for j, f := range freqs {
			share := power(c, 0, f)
			if i == j && share > 0.05 {
				t.Errorf("party %d hears itself: %.0f Hz share %.2f", i, f, share)
			}
			if i != j && share < 0.2 {
				t.Errorf("party %d does not hear party %d: %.0f Hz share %.2f", i, j, f, share)
			}
		}
	}
	// Party 2 leaves; 0 and 1 stop hearing 1700 Hz.
	_ = calls[2].Hangup(ctx)
	mark := calls[0].Mark()
	time.Sleep(1200 * time.Millisecond)
	if share := power(calls[0], mark, 1700); share > 0.05 {
		t.Errorf("party 0 still hears the party that left: share %.2f", share)
	}
	if share := power(calls[0], mark, 1100); share < 0.5 {
		t.Errorf("party 0 lost party 1 after party 2 left: share %.2f", share)
	}
	_ = calls[0].Hangup(ctx)
	_ = calls[1].Hangup(ctx)
	testharness.WaitUntil(t, 5*time.Second, "calls to end", func() bool { return srv.ActiveCalls() == 0 })
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
		return c.Play(ctx, media.NewTone(media.Tone{Freqs: []float64{700}, Duration: 10 * time.Second}))
	}))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := phone.Call(ctx, uri(srv, "conf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitTone(ctx, 700, 20); err != nil {
		t.Fatalf("caller not back with the flow after leaving the room: %v", err)
	}
	_ = call.Hangup(ctx)
}
