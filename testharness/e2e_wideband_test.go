package testharness_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A wideband phone (G.722 only, or Opus only when libopus is installed)
// calls the server, whose flow dials a G.711-only phone: the server
// answers each side in its own codec and transcodes between them, audio
// flows both ways at each phone's own rate, and RFC 4733 digits cross.
func TestDialBridgesWidebandToNarrowband(t *testing.T) {
	wide := []string{"G722"}
	if codec.OpusAvailable() == nil {
		wide = append(wide, "opus")
	}
	for _, name := range wide {
		t.Run(name, func(t *testing.T) {
			var spec codec.CodecSpec
			for _, c := range codec.Codecs() {
				if c.Name == name {
					spec = c
				}
			}
			b, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, Codecs: codec.Codecs()[:1], Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
				return c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
			}))
			h := testharness.New(t, srv)
			h.Own(b)
			callA := h.Call("bridge", testharness.HarnessCallOptions{Name: "A", Phone: h.Phone(testharness.PhoneOptions{Codecs: []codec.CodecSpec{spec}})})
			callB := h.ExpectIncoming(b, "B")
			if got := callA.Leg.Endpoint().Config().Codec.Name; got != name {
				t.Fatalf("A's call runs %s, want %s", got, name)
			}
			if got := callB.Leg.Endpoint().Config().Codec.Name; got != "PCMU" {
				t.Fatalf("B's call runs %s, want PCMU", got)
			}
			callA.ExpectTwoWayAudio(callB, 440, 1000)
			if _, rate := callA.Heard(0); rate != spec.SampleRate {
				t.Errorf("A decodes %d Hz audio, want %d", rate, spec.SampleRate)
			}
			callA.Press("42")
			callB.ExpectDigits("42")
			callA.End()
			h.ExpectIdle()
		})
	}
}
