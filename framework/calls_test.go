package framework

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Server.Calls lists the live calls oldest first; Server.Call finds one by
// ID, and hanging it up from outside its flow ends it for the phone.
func TestServerCallsListAndHangupByID(t *testing.T) {
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 30 * time.Second}))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var legs []*testharness.MemoryLeg
	var phones []*testharness.PhoneCall
	for _, u := range []string{"first", "second", "third"} {
		leg, phone := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: u, From: "sip:" + u + "@memory"})
		srv.StartCall(leg)
		testharness.WaitUntil(t, 5*time.Second, u+" answered", leg.Answered)
		legs, phones = append(legs, leg), append(phones, phone)
	}
	calls := srv.Calls()
	if len(calls) != 3 {
		t.Fatalf("Calls() = %d calls, want 3: %+v", len(calls), calls)
	}
	for i, want := range []string{"first", "second", "third"} {
		if calls[i].User != want || calls[i].ID != legs[i].ID() || calls[i].Start.IsZero() {
			t.Errorf("call %d = %+v, want user %s id %s and a start time", i, calls[i], want, legs[i].ID())
		}
	}
	if srv.Call("no-such-call") != nil {
		t.Error("Call(unknown) is not nil")
	}
	c := srv.Call(legs[1].ID())
	if c == nil {
		t.Fatal("Call(second) is nil")
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	select {
	case <-legs[1].Done():
	case <-ctx.Done():
		t.Fatal("the second phone was not hung up")
	}
	testharness.WaitUntil(t, 5*time.Second, "two calls left", func() bool { return len(srv.Calls()) == 2 })
	// The others still hear their tone.
	for _, i := range []int{0, 2} {
		if _, err := phones[i].WaitTone(ctx, 1000, 10); err != nil {
			t.Errorf("phone %d: %v", i, err)
		}
		_ = phones[i].Hangup(ctx)
	}
	testharness.WaitUntil(t, 5*time.Second, "no calls", func() bool { return len(srv.Calls()) == 0 })
}
