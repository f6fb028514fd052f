package testharness_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The virtual browser (pion, the /ws protocol; no Chromium) calls a route
// and hears it, and is called through a flow by a SIP phone: audio both
// ways.
func TestVirtualBrowser(t *testing.T) {
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	r.HandleFunc("alice", func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
	})
	srv := startBrowserServer(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), srv.Tokens().MintFor("alice", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.User() != "alice" {
		t.Fatalf("logged in as %q", b.User())
	}
	call, err := b.Call(ctx, "tone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("the browser does not hear the tone route: %v", err)
	}
	_ = call.Hangup(ctx)
	waitFor(t, 5*time.Second, "the tone call to end", func() bool { return srv.ActiveCalls() == 0 })

	phone := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	pcall, err := phone.Call(ctx, uri(srv, "alice"))
	if err != nil {
		t.Fatalf("the phone's call to alice: %v", err)
	}
	var bcall *testharness.PhoneCall
	select {
	case bcall = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("the browser was never rung")
	}
	pcall.Play(media.NewTone(media.Tone{Freqs: []float64{700}}))
	bcall.Play(media.NewTone(media.Tone{Freqs: []float64{1300}}))
	if _, err := bcall.WaitTone(ctx, 700, 20); err != nil {
		t.Fatalf("the browser does not hear the phone: %v", err)
	}
	if _, err := pcall.WaitTone(ctx, 1300, 20); err != nil {
		t.Fatalf("the phone does not hear the browser: %v", err)
	}
	_ = pcall.Hangup(ctx)
	waitFor(t, 10*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })

	// A bad token is refused with a clear error.
	if _, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), "nope"); err == nil {
		t.Fatal("a bad token logged in")
	}
}
