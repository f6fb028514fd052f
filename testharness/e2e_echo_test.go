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

// The echo app reflects the caller's packets: a 700 Hz tone comes back,
// then a 1200 Hz one (the echo follows what is said, it is not a
// recording), and RFC 4733 digits come back too.
func TestEchoReflectsAudioAndDigits(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Echo(nil))
	ph := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := ph.Call(ctx, uri(srv, "echo"))
	if err != nil {
		t.Fatal(err)
	}
	defer call.Hangup(ctx)
	call.Play(media.NewTone(media.Tone{Freqs: []float64{700}}))
	if _, err := call.WaitTone(ctx, 700, 20); err != nil {
		t.Fatalf("no echo of 700 Hz: %v", err)
	}
	call.Play(media.NewTone(media.Tone{Freqs: []float64{1200}}))
	if _, err := call.WaitTone(ctx, 1200, 20); err != nil {
		t.Fatalf("no echo of 1200 Hz: %v", err)
	}
	if err := call.SendDTMF("42"); err != nil {
		t.Fatal(err)
	}
	testharness.WaitUntil(t, 5*time.Second, "the digits to come back", func() bool { return call.Digits() == "42" })
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
}
