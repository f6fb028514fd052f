package testharness_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/testharness"
)

// channelFrequency splits one channel out of a stereo WAV with sox and
// returns its dominant frequency over its loudest 500 ms.
func channelFrequency(t *testing.T, path, ch string) float64 {
	t.Helper()
	sox, err := exec.LookPath("sox")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sox, "--i", "-c", path).CombinedOutput(); err != nil || string(out) != "2\n" {
		t.Fatalf("sox --i -c %s: %v %q, want 2 channels", path, err, out)
	}
	mono := filepath.Join(t.TempDir(), "ch"+ch+".wav")
	if out, err := exec.Command(sox, path, mono, "remix", ch).CombinedOutput(); err != nil {
		t.Fatalf("sox remix %s: %v\n%s", ch, err, out)
	}
	return dominantInFile(t, mono)
}

// Phone A calls, the flow records the call in stereo and dials phone B:
// A's 700 Hz is on the left, B's 1300 Hz on the right — whether the bridge
// forwards packets (same codec) or transcodes (B speaks PCMA only): the
// recording taps the legs beside the bridge.
func TestRecordStereoBridgedCall(t *testing.T) {
	requireBinary(t, "sox", "apt-get install sox")
	for _, name := range []string{"PCMU", "PCMA"} {
		t.Run(name, func(t *testing.T) { recordStereoBridged(t, name) })
	}
}

func recordStereoBridged(t *testing.T, name string) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, Codecs: []codec.CodecSpec{mustCodec(t, name)}})
	path := filepath.Join(t.TempDir(), "call.wav")
	recorded := make(chan error, 1)
	var recLen time.Duration
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		go func() {
			d, err := c.Record(ctx, path, framework.RecordOptions{Stereo: true, StopDigits: "-", MaxDuration: 3 * time.Second})
			recLen = d
			recorded <- err
		}()
		return c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	h := testharness.New(t, srv)
	h.Own(b)
	callA := h.Call("rec", testharness.HarnessCallOptions{Name: "A"})
	callA.PlayTone(700, 0)
	h.ExpectIncoming(b, "B").PlayTone(1300, 0)
	expectRecorded(t, h, recorded)
	callA.End()
	if recLen < 2900*time.Millisecond || recLen > 3200*time.Millisecond {
		t.Errorf("recorded %s, want 3 s", recLen)
	}
	wantChannels(t, path, 700, "caller", 1300, "other party")
}

// Without a bridge the right channel is what the flow plays to the caller.
func TestRecordStereoPrompt(t *testing.T) {
	requireBinary(t, "sox", "apt-get install sox")
	path := filepath.Join(t.TempDir(), "prompt.wav")
	recorded := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		go func() {
			_, err := c.Record(ctx, path, framework.RecordOptions{Stereo: true, StopDigits: "-", MaxDuration: 2 * time.Second})
			recorded <- err
		}()
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 5 * time.Second}))
	}))
	h := testharness.New(t, srv)
	call := h.Call("rec", testharness.HarnessCallOptions{})
	call.PlayTone(440, 0)
	expectRecorded(t, h, recorded)
	call.End()
	wantChannels(t, path, 440, "caller", 1000, "prompt")
}

// In a conference the right channel is the mix the caller hears.
func TestRecordStereoConference(t *testing.T) {
	requireBinary(t, "sox", "apt-get install sox")
	path := filepath.Join(t.TempDir(), "conf.wav")
	recorded := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		if c.User() == "recorder" {
			go func() {
				_, err := c.Record(ctx, path, framework.RecordOptions{Stereo: true, StopDigits: "-", MaxDuration: 2 * time.Second})
				recorded <- err
			}()
		}
		return c.Join(ctx, "room", framework.JoinOptions{})
	}))
	h := testharness.New(t, srv)
	other := h.Call("other", testharness.HarnessCallOptions{Name: "the other party", Phone: h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})})
	other.PlayTone(1300, 0)
	call := h.Call("recorder", testharness.HarnessCallOptions{})
	call.PlayTone(600, 0)
	expectRecorded(t, h, recorded)
	call.End()
	other.End()
	wantChannels(t, path, 600, "caller", 1300, "the room")
}

// expectRecorded fails the test unless the flow's Record returns nil.
func expectRecorded(t *testing.T, h *testharness.Harness, recorded <-chan error) {
	t.Helper()
	if err := testharness.Await(h, recorded, "the flow's Record to return"); err != nil {
		t.Fatalf("Record: %v", err)
	}
}

// wantChannels checks the dominant frequency of each channel of a stereo
// recording (±10 Hz).
func wantChannels(t *testing.T, path string, left float64, leftIs string, right float64, rightIs string) {
	t.Helper()
	if f := channelFrequency(t, path, "1"); f < left-10 || f > left+10 {
		t.Errorf("left channel (%s) at %.0f Hz, want %.0f", leftIs, f, left)
	}
	if f := channelFrequency(t, path, "2"); f < right-10 || f > right+10 {
		t.Errorf("right channel (%s) at %.0f Hz, want %.0f", rightIs, f, right)
	}
}
