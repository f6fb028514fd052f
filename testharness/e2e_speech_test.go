package testharness_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The caller says a sentence after a second of silence: DetectSpeech
// returns the utterance with about the sentence's length, and the event
// stream has speaking then silent. A silent caller gets ErrNoInput.
func TestDetectSpeechEndToEnd(t *testing.T) {
	needBinary(t, "espeak-ng")
	type result struct {
		u   framework.Utterance
		err error
	}
	results := make(chan result, 2)
	var mu sync.Mutex
	var events []string
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
	speech, err := (&media.TTS{}).Speech(ctx, "Hello, I would like to speak to the operator please.", "en-gb", 8000)
	if err != nil {
		t.Fatal(err)
	}
	spoken := speech.Duration()
	phone := newPhone(t)

	call, err := phone.Call(ctx, uri(srv, "vad"))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	call.Play(media.Sequence(media.Silence(time.Second), speech))
	var r result
	select {
	case r = <-results:
	case <-ctx.Done():
		t.Fatal("DetectSpeech never returned")
	}
	_ = call.Hangup(ctx)
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
	waitFor(t, 2*time.Second, "events", func() bool {
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
	call, err = phone.Call(ctx, uri(srv, "vad"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case r = <-results:
	case <-ctx.Done():
		t.Fatal("DetectSpeech never returned")
	}
	_ = call.Hangup(ctx)
	if !errors.Is(r.err, framework.ErrNoInput) {
		t.Fatalf("silent caller: %+v, %v; want ErrNoInput", r.u, r.err)
	}
}

// Barge-in: the caller starts talking over a long prompt, which stops.
func TestDetectSpeechBargeIn(t *testing.T) {
	needBinary(t, "espeak-ng")
	results := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		prompt := media.NewTone(media.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second})
		_, err := c.DetectSpeech(ctx, framework.DetectSpeechOptions{Prompt: prompt})
		results <- err
		return c.Play(ctx, media.Silence(5*time.Second))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	speech, err := (&media.TTS{}).Speech(ctx, "Operator, I would like to speak to somebody about my bill please.", "en-us", 8000)
	if err != nil {
		t.Fatal(err)
	}
	phone := newPhone(t)
	call, err := phone.Call(ctx, uri(srv, "bargein"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("no prompt: %v", err)
	}
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
	select {
	case err := <-results:
		if err != nil {
			t.Fatalf("DetectSpeech: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("DetectSpeech never returned")
	}
	_ = call.Hangup(ctx)
}
