package media_test

import (
	"errors"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

func TestSilence(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		frames int
	}{{100 * time.Millisecond, 5}, {30 * time.Millisecond, 2}, {0, 500}} {
		s, n := mediatest.ReadFrames(t, media.Silence(tc.d), 16000, 500)
		if n != tc.frames || dsp.RMS(s) != 0 {
			t.Errorf("Silence(%v): %d frames, RMS %g; want %d frames", tc.d, n, dsp.RMS(s), tc.frames)
		}
	}
	// Silence overwrites what the frame held.
	f := media.NewFrame(8000)
	for i := range f.Samples {
		f.Samples[i] = 1000
	}
	if err := media.Silence(time.Second).ReadFrame(f); err != nil || dsp.RMS(f.Samples) != 0 {
		t.Fatalf("silence frame: %v, RMS %g", err, dsp.RMS(f.Samples))
	}
}

func TestSequence(t *testing.T) {
	seq := media.Sequence(
		audio.NewTone(audio.Tone{Freqs: []float64{440}, Duration: 100 * time.Millisecond}),
		media.Silence(60*time.Millisecond),
		media.Sequence(), // nothing: skipped
		audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 40 * time.Millisecond}),
	)
	check := func() {
		s, n := mediatest.ReadFrames(t, seq, 8000, 100)
		if n != 10 {
			t.Fatalf("%d frames, want 5+3+2", n)
		}
		if f, _ := dsp.DominantFrequency(s[:800], 8000, 100, 3800, 10); math.Abs(f-440) > 5 {
			t.Errorf("first part at %.1f Hz", f)
		}
		if dsp.RMS(s[800:1280]) != 0 {
			t.Error("second part not silent")
		}
		if f, _ := dsp.DominantFrequency(s[1280:], 8000, 100, 3800, 10); math.Abs(f-1000) > 5 {
			t.Errorf("third part at %.1f Hz", f)
		}
		// Stays at EOF.
		if err := seq.ReadFrame(media.NewFrame(8000)); !errors.Is(err, io.EOF) {
			t.Errorf("after the end: %v", err)
		}
	}
	check()
	seq.(interface{ Rewind() }).Rewind()
	check()

	// Errors other than EOF come through.
	boom := errors.New("boom")
	bad := media.Sequence(media.Silence(20*time.Millisecond), media.SourceFunc(func(*media.Frame) error { return boom }))
	f := media.NewFrame(8000)
	if err := bad.ReadFrame(f); err != nil {
		t.Fatal(err)
	}
	if err := bad.ReadFrame(f); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if _, n := mediatest.ReadFrames(t, media.Sequence(), 8000, 10); n != 0 {
		t.Fatal("empty sequence yielded frames")
	}
}

func TestLoop(t *testing.T) {
	tone := audio.NewTone(audio.Tone{Freqs: []float64{440}, Amplitude: 10000, Duration: 100 * time.Millisecond})
	s, n := mediatest.ReadFrames(t, media.Loop(tone, 3), 8000, 100)
	if n != 15 {
		t.Fatalf("3 loops of 5 frames gave %d", n)
	}
	one := s[:800]
	for k := 1; k < 3; k++ {
		if !slices.Equal(s[k*800:(k+1)*800], one) {
			t.Fatalf("loop %d differs from the first", k)
		}
	}
	// Forever.
	if _, n := mediatest.ReadFrames(t, media.Loop(audio.NewTone(audio.Tone{Freqs: []float64{440}, Duration: 60 * time.Millisecond}), 0), 8000, 1000); n != 1000 {
		t.Fatalf("endless loop ended after %d frames", n)
	}
	// Looping a sequence (and rewinding the loop).
	l := media.Loop(media.Sequence(media.Silence(20*time.Millisecond), audio.NewTone(audio.Tone{Freqs: []float64{440}, Duration: 20 * time.Millisecond})).(interface {
		media.Source
		Rewind()
	}), 2)
	for range 2 {
		s, n = mediatest.ReadFrames(t, l, 8000, 100)
		if n != 4 || dsp.RMS(s[:160]) != 0 || dsp.RMS(s[160:320]) == 0 || dsp.RMS(s[320:480]) != 0 || dsp.RMS(s[480:]) == 0 {
			t.Fatalf("looped sequence: %d frames", n)
		}
		l.(interface{ Rewind() }).Rewind()
	}
	// An empty source does not spin.
	for _, times := range []int{0, 5} {
		never := &neverSource{}
		if _, n := mediatest.ReadFrames(t, media.Loop(never, times), 8000, 10); n != 0 || never.rewinds > 1 {
			t.Fatalf("empty source looped %d times: %d frames, %d rewinds", times, n, never.rewinds)
		}
	}
	// Errors come through.
	boom := errors.New("boom")
	bad := media.Loop(failingSource{boom}, 0)
	if err := bad.ReadFrame(media.NewFrame(8000)); !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
}
