package testharness_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The caller says a sentence after a second of silence: DetectSpeech
// returns the utterance with about the sentence's length, and the event
// stream has speaking then silent. A silent caller gets ErrNoInput.
func TestDetectSpeechEndToEnd(t *testing.T) {
	requireBinary(t, "espeak-ng", "apt-get install espeak-ng")
	type result struct {
		u   framework.Utterance
		err error
	}
	results := make(chan result, 2)
	var mu sync.Mutex
	var events []framework.EventType
	srv := startServer(t, framework.Config{OnEvent: func(e framework.Event) {
		if e.Type == framework.EventSpeaking || e.Type == framework.EventSilent {
			mu.Lock()
			events = append(events, e.Type)
			mu.Unlock()
		}
	}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		u, err := c.DetectSpeech(ctx, framework.DetectSpeechOptions{Timeout: 3 * time.Second})
		results <- result{u, err}
		return c.Play(ctx, media.Silence(5*time.Second))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	speech, err := (&audio.TTS{}).Speech(ctx, "Hello, I would like to speak to the operator please.", "en-gb", 8000)
	if err != nil {
		t.Fatal(err)
	}
	spoken := speech.Duration()
	h := testharness.New(t, srv)
	call := h.Call("vad", testharness.HarnessCallOptions{Name: "the speaking caller"})
	began := time.Now()
	call.Play(media.Sequence(media.Silence(time.Second), speech))
	r := testharness.Await(h, results, "DetectSpeech to return")
	call.End()
	if r.err != nil {
		t.Fatalf("DetectSpeech: %v", r.err)
	}
	t.Logf("utterance %+v (began %s after the phone started playing); espeak-ng's audio lasts %s",
		r.u, r.u.Start.Sub(began), spoken)
	// espeak-ng's audio has some silence at both ends.
	if !r.u.Complete || r.u.Duration < spoken-600*time.Millisecond || r.u.Duration > spoken {
		t.Errorf("utterance of %s, want about %s", r.u.Duration, spoken)
	}
	if d := r.u.Start.Sub(began); d < 800*time.Millisecond || d > 1600*time.Millisecond {
		t.Errorf("speech started %s after the phone began playing, want about 1 s", d)
	}
	testharness.WaitUntil(t, 2*time.Second, "events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) >= 2
	})
	mu.Lock()
	if len(events) != 2 || events[0] != framework.EventSpeaking || events[1] != framework.EventSilent {
		t.Errorf("events %v, want speaking, silent", events)
	}
	mu.Unlock()

	// A caller who says nothing (line noise only).
	call = h.Call("vad", testharness.HarnessCallOptions{Name: "the silent caller"})
	r = testharness.Await(h, results, "DetectSpeech to return for the silent caller")
	call.End()
	if !errors.Is(r.err, framework.ErrNoInput) {
		t.Fatalf("silent caller: %+v, %v; want ErrNoInput", r.u, r.err)
	}
}

// Barge-in: the caller starts talking over a long prompt, which stops.
func TestDetectSpeechBargeIn(t *testing.T) {
	requireBinary(t, "espeak-ng", "apt-get install espeak-ng")
	results := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		prompt := audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second})
		_, err := c.DetectSpeech(ctx, framework.DetectSpeechOptions{Prompt: prompt})
		results <- err
		return c.Play(ctx, media.Silence(5*time.Second))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	speech, err := (&audio.TTS{}).Speech(ctx, "Operator, I would like to speak to somebody about my bill please.", "en-us", 8000)
	if err != nil {
		t.Fatal(err)
	}
	h := testharness.New(t, srv)
	call := h.Call("bargein", testharness.HarnessCallOptions{})
	call.ExpectTone(1000) // the prompt
	call.Play(speech)
	// The prompt (20 s long) stops within the onset plus a round trip,
	// while the caller is still talking (the sentence lasts 3-4 s).
	wctx, wcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer wcancel()
	if _, err := call.WaitFor(wctx, 200*time.Millisecond, func(l testharness.Listen) bool { return l.RMS < 30 }); err != nil {
		t.Fatalf("the prompt went on over the caller's speech: %v", err)
	}
	if len(results) != 0 {
		t.Fatal("DetectSpeech returned before the caller finished; the prompt stopped with it, not by barge-in")
	}
	if err := testharness.Await(h, results, "DetectSpeech to return"); err != nil {
		t.Fatalf("DetectSpeech: %v", err)
	}
}

// The flow of examples/speech: a stereo recording, a spoken question the
// caller talks over, and a spoken answer — two taps on the caller at
// once (the recording's left channel and DetectSpeech's VAD).
func TestSpeechFlowWithStereoRecording(t *testing.T) {
	requireBinary(t, "espeak-ng", "apt-get install espeak-ng")
	requireBinary(t, "sox", "apt-get install sox")
	path := filepath.Join(t.TempDir(), "call.wav")
	type result struct {
		u   framework.Utterance
		err error
	}
	results := make(chan result, 1)
	recorded := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		go func() {
			_, err := c.Record(ctx, path, framework.RecordOptions{Stereo: true, StopDigits: "-", MaxDuration: 5 * time.Second})
			recorded <- err
		}()
		ask, err := c.Speech(ctx, "Hello. Please tell me why you are calling, after which I will answer you at length.", framework.SayOptions{})
		if err != nil {
			return err
		}
		u, err := c.DetectSpeech(ctx, framework.DetectSpeechOptions{Prompt: ask})
		results <- result{u, err}
		if err != nil {
			return err
		}
		return c.Say(ctx, "Thank you.", framework.SayOptions{})
	}))
	h := testharness.New(t, srv)
	call := h.Call("speech", testharness.HarnessCallOptions{})
	call.ExpectSound() // the question
	time.Sleep(500 * time.Millisecond)
	call.PlayTone(600, time.Second)
	r := testharness.Await(h, results, "DetectSpeech to return")
	if r.err != nil || !r.u.Complete || r.u.Duration < 900*time.Millisecond || r.u.Duration > 1100*time.Millisecond {
		t.Fatalf("DetectSpeech: %+v, %v; want the 1 s the caller spoke", r.u, r.err)
	}
	// The flow ends the call after its answer, which ends the recording.
	if err := testharness.Await(h, recorded, "Record to return"); err != nil && !errors.Is(err, framework.ErrHangup) {
		t.Fatalf("Record: %v", err)
	}
	call.End()
	if f := channelFrequency(t, path, "1"); f < 590 || f > 610 {
		t.Errorf("left channel (caller) at %.0f Hz, want 600", f)
	}
	// The right channel holds the question until the caller talks over
	// it, then nothing while the caller talks, then the answer.
	left, right := loudFrames(t, path, "1"), loudFrames(t, path, "2")
	first, last := -1, -1
	for i, l := range left {
		if l {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	before, during, after := 0, 0, 0
	for i, l := range right {
		switch {
		case !l:
		case i < first:
			before++
		case i <= last:
			during++
		default:
			after++
		}
	}
	t.Logf("caller spoke in frames %d-%d; the right channel is loud in %d frames before, %d during, %d after", first, last, before, during, after)
	if first < 0 || before < 10 || after < 10 || during > 10 {
		t.Error("the right channel does not hold the question, then the answer")
	}
}

// loudFrames returns, for each 20 ms frame of one channel of a stereo
// WAV, whether it is loud (rms > 1000).
func loudFrames(t *testing.T, path, ch string) []bool {
	t.Helper()
	mono := filepath.Join(t.TempDir(), "ch"+ch+".wav")
	if out, err := exec.Command("sox", path, mono, "remix", ch).CombinedOutput(); err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
	w, err := audio.OpenWAV(mono)
	if err != nil {
		t.Fatal(err)
	}
	var loud []bool
	f := media.NewFrame(8000)
	for w.ReadFrame(f) == nil {
		loud = append(loud, dsp.RMS(f.Samples) > 1000)
	}
	return loud
}
