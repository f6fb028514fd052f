package testharness_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A wideband phone (G.722 only, or Opus only when libopus is installed)
// calls the server, whose flow dials a G.711-only phone: the server
// answers each side in its own codec and transcodes between them, audio
// flows both ways at each phone's own rate, and RFC 4733 digits cross.
func TestDialBridgesWidebandToNarrowband(t *testing.T) {
	wide := []string{"G722"}
	if media.OpusAvailable() == nil {
		wide = append(wide, "opus")
	}
	for _, name := range wide {
		t.Run(name, func(t *testing.T) {
			var codec media.CodecSpec
			for _, c := range media.Codecs() {
				if c.Name == name {
					codec = c
				}
			}
			b, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, Codecs: media.Codecs()[:1], Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
				return c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
			}))
			a, err := testharness.NewPhone(testharness.PhoneOptions{Codecs: []media.CodecSpec{codec}, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
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
			if got := callA.Leg.Endpoint().Config().Codec.Name; got != name {
				t.Fatalf("A's call runs %s, want %s", got, name)
			}
			if got := callB.Leg.Endpoint().Config().Codec.Name; got != "PCMU" {
				t.Fatalf("B's call runs %s, want PCMU", got)
			}
			callA.Play(media.NewTone(media.Tone{Freqs: []float64{440}}))
			callB.Play(media.NewTone(media.Tone{Freqs: []float64{1000}}))
			if _, err := callB.WaitTone(ctx, 440, 20); err != nil {
				t.Fatalf("B does not hear A: %v", err)
			}
			if _, err := callA.WaitTone(ctx, 1000, 20); err != nil {
				t.Fatalf("A does not hear B: %v", err)
			}
			if _, rate := callA.Heard(0); rate != codec.SampleRate {
				t.Errorf("A decodes %d Hz audio, want %d", rate, codec.SampleRate)
			}
			if err := callA.SendDTMF("42"); err != nil {
				t.Fatal(err)
			}
			testharness.WaitUntil(t, 5*time.Second, "B to receive A's digits", func() bool { return callB.Digits() == "42" })
			_ = callA.Hangup(ctx)
			testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
		})
	}
}
