package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A flow keeps a second of silence, then Says a sentence: the phone hears
// silence first, then speech of a plausible length and loudness. The
// second call's sentence comes from the cache.
func TestSayEndToEnd(t *testing.T) {
	requireBinary(t, "espeak-ng", "apt-get install espeak-ng")
	tts := &audio.TTS{}
	said := make(chan error, 2)
	srv := startServer(t, framework.Config{TTS: tts}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, media.Silence(time.Second)); err != nil {
			return err
		}
		err := c.Say(ctx, "Welcome to Switchboard. Your call is important to us.", framework.SayOptions{})
		said <- err
		if err != nil {
			return err
		}
		return c.Play(ctx, media.Silence(5*time.Second))
	}))
	h := testharness.New(t, srv)
	for i := range 2 {
		call := h.Call("say", testharness.HarnessCallOptions{Name: fmt.Sprintf("call %d", i)})
		mark := call.Mark()
		if err := testharness.Await(h, said, "Say to return"); err != nil {
			t.Fatalf("Say: %v", err)
		}
		time.Sleep(300 * time.Millisecond) // the last packets in flight
		heard, rate := call.Heard(mark)
		call.End()
		if rate != 8000 {
			t.Fatalf("heard %d Hz audio", rate)
		}
		// Frame by frame: silence until the speech starts, then speech.
		const n = 160
		first, last, loud := -1, -1, 0
		for f := 0; (f+1)*n <= len(heard); f++ {
			if dsp.RMS(heard[f*n:(f+1)*n]) > 300 {
				if first < 0 {
					first = f
				}
				last = f
				loud++
			}
		}
		if first < 0 {
			t.Fatal("no speech heard")
		}
		startAt := time.Duration(first) * 20 * time.Millisecond
		speech := time.Duration(last-first+1) * 20 * time.Millisecond
		t.Logf("call %d: silence for %s, then %s of speech (%d loud frames)", i+1, startAt, speech, loud)
		if startAt < 800*time.Millisecond || startAt > 1500*time.Millisecond {
			t.Errorf("speech began %s after answer, want after the 1 s of silence", startAt)
		}
		if r := dsp.RMS(heard[:first*n]); r > 30 {
			t.Errorf("before the speech the phone heard rms %.0f, want silence", r)
		}
		// Nine words at espeak-ng's 175 words per minute.
		if speech < 2*time.Second || speech > 6*time.Second || loud < int(speech/(20*time.Millisecond))/3 {
			t.Errorf("%s of speech with %d loud frames: not the sentence", speech, loud)
		}
		if f, _ := dsp.DominantFrequency(heard[first*n:(last+1)*n], rate, 80, 3800, 10); f > 1500 {
			t.Errorf("speech's dominant frequency %.0f Hz", f)
		}
	}
	if st := tts.Stats(); st.Runs != 1 || st.Hits != 1 {
		t.Errorf("two calls saying one sentence: %+v, want one synthesis and one cache hit", st)
	}
}

// Say without espeak-ng fails with a typed error the flow can act on.
func TestSayWithoutEspeak(t *testing.T) {
	errs := make(chan error, 1)
	srv := startServer(t, framework.Config{TTS: &audio.TTS{Command: "/nonexistent/espeak-ng"}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Say(ctx, "hello", framework.SayOptions{})
		errs <- err
		return err
	}))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The flow fails before answering, so the phone's call fails too.
	_, _ = phone.Call(ctx, uri(srv, "say"))
	select {
	case err := <-errs:
		if !errors.Is(err, audio.ErrTTSUnavailable) {
			t.Fatalf("Say: %v, want ErrTTSUnavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("Say never returned")
	}
}

// The flow sends every DTMF digit to the caller: in-band tones to a
// gateway without telephone-event (its in-band detector hears them), RFC
// 4733 events to a phone that negotiated them.
func TestSendDTMF(t *testing.T) {
	const all = "0123456789*#"
	sent := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, media.Silence(300*time.Millisecond)); err != nil {
			return err
		}
		err := c.SendDTMF(ctx, all, framework.SendDTMFOptions{})
		sent <- err
		if err != nil {
			return err
		}
		return c.Play(ctx, media.Silence(10*time.Second))
	}))
	for _, tc := range []struct {
		name   string
		inband bool
		ports  int
	}{{"inband", true, 41000}, {"rfc4733", false, 42000}} {
		t.Run(tc.name, func(t *testing.T) {
			h := testharness.New(t, srv)
			call := h.Call("dtmf", testharness.HarnessCallOptions{
				Phone: h.Phone(testharness.PhoneOptions{InbandDTMF: tc.inband, RTPPortMin: tc.ports, RTPPortMax: tc.ports + 999})})
			if got := call.Leg.Endpoint().Config().DTMFPayloadType != 0; got == tc.inband {
				t.Fatalf("telephone-event negotiated: %v", got)
			}
			start := time.Now()
			if err := testharness.Await(h, sent, "SendDTMF to return"); err != nil {
				t.Fatalf("SendDTMF: %v", err)
			}
			// 12 digits of 100 ms with 100 ms gaps.
			if d := time.Since(start); d < 2*time.Second {
				t.Errorf("SendDTMF returned after %s, before the digits could be sent", d)
			}
			testharness.WaitUntil(t, 3*time.Second, "all digits", func() bool { return len(call.Digits()) >= len(all) })
			time.Sleep(300 * time.Millisecond) // no extra digits trail
			if got := call.Digits(); got != all {
				t.Fatalf("phone received %q, want %q", got, all)
			}
		})
	}
}
