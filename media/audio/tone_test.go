package audio

import (
	"errors"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

func TestToneFrequencyAndLevel(t *testing.T) {
	for _, rate := range []int{8000, 16000, 48000} {
		for _, freq := range []float64{350, 1000, 3000} {
			s, n := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{freq}, Duration: 500 * time.Millisecond}), rate, 1000)
			if n != 25 {
				t.Fatalf("%d Hz: %d frames for 500 ms", rate, n)
			}
			f, _ := dsp.DominantFrequency(s, rate, 100, 3800, 10)
			if math.Abs(f-freq) > 5 {
				t.Errorf("%d Hz: %g Hz tone heard at %.1f Hz", rate, freq, f)
			}
			if r := dsp.RMS(s); math.Abs(r-8000/math.Sqrt2) > 20 {
				t.Errorf("%d Hz: RMS %.0f, want %.0f (default amplitude 8000)", rate, r, 8000/math.Sqrt2)
			}
		}
	}
}

func TestToneTwoComponentsAndAmplitude(t *testing.T) {
	s, _ := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{440, 480}, Amplitude: 3000, Duration: time.Second}), 8000, 100)
	for _, f := range []float64{440, 480} {
		if p, want := dsp.GoertzelPower(s, 8000, f), 3000.0*3000/2; math.Abs(p-want) > 0.02*want {
			t.Errorf("power at %g Hz %.0f, want %.0f", f, p, want)
		}
	}
	if p := dsp.GoertzelPower(s, 8000, 460); p > 3000*3000/2/100 {
		t.Errorf("power between the components %.0f", p)
	}
	peak := slices.Max(s)
	if peak < 5900 || peak > 6000 {
		t.Errorf("peak %d, want about 2·3000", peak)
	}

	// Components that add up past full scale clip instead of wrapping.
	s, _ = mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{500, 500}, Amplitude: 30000, Duration: 100 * time.Millisecond}), 8000, 100)
	if slices.Max(s) != math.MaxInt16 || slices.Min(s) != math.MinInt16+1 && slices.Min(s) != math.MinInt16 {
		t.Errorf("clipped range %d..%d", slices.Min(s), slices.Max(s))
	}
	for i := 1; i < len(s); i++ {
		if math.Abs(float64(s[i])-float64(s[i-1])) > 30000 {
			t.Fatalf("wrap-around at %d: %d -> %d", i, s[i-1], s[i])
		}
	}

	// No frequencies: silence of the given length.
	s, n := mediatest.ReadFrames(t, NewTone(Tone{Duration: 60 * time.Millisecond}), 8000, 100)
	if n != 3 || dsp.RMS(s) != 0 {
		t.Errorf("empty tone: %d frames, RMS %g", n, dsp.RMS(s))
	}
}

// Frames join into one continuous sine, and a change of frame rate keeps
// the phase.
func TestTonePhaseContinuity(t *testing.T) {
	const freq = 1234.5
	s, _ := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{freq}, Amplitude: 10000, Duration: 300 * time.Millisecond}), 8000, 100)
	ideal := dsp.Sine(8000, freq, 10000, len(s), 0)
	for i := range s {
		if d := math.Abs(float64(s[i]) - float64(ideal[i])); d > 1 {
			t.Fatalf("sample %d is %d, continuous sine %d", i, s[i], ideal[i])
		}
	}

	src := NewTone(Tone{Freqs: []float64{freq}, Amplitude: 10000})
	f8, f16 := media.NewFrame(8000), media.NewFrame(16000)
	for range 7 {
		if err := src.ReadFrame(f8); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.ReadFrame(f16); err != nil {
		t.Fatal(err)
	}
	// 7 frames at 8 kHz = 140 ms; the 16 kHz frame continues from there.
	for i, v := range f16.Samples {
		tm := 0.140 + float64(i)/16000
		want := 10000 * math.Sin(2*math.Pi*freq*tm)
		if math.Abs(float64(v)-want) > 2 {
			t.Fatalf("16 kHz sample %d is %d, want %.0f", i, v, want)
		}
	}
}

func TestToneDuration(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		frames int
	}{
		{time.Second, 50},
		{20 * time.Millisecond, 1},
		{30 * time.Millisecond, 2},
		{time.Millisecond, 1},
	} {
		_, n := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{440}, Duration: tc.d}), 8000, 1000)
		if n != tc.frames {
			t.Errorf("%v: %d frames, want %d", tc.d, n, tc.frames)
		}
	}
	// The part of the last frame beyond Duration is silent.
	s, _ := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{440}, Duration: 30 * time.Millisecond}), 8000, 10)
	if dsp.RMS(s[160:240]) < 1000 || dsp.RMS(s[240:]) != 0 {
		t.Errorf("last frame: RMS %.0f before 30 ms, %.0f after", dsp.RMS(s[160:240]), dsp.RMS(s[240:]))
	}
	// Zero Duration is endless; so are EOF-free reads after many frames.
	if _, n := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{440}}), 8000, 3000); n != 3000 {
		t.Errorf("endless tone ended after %d frames", n)
	}
}

// Ringback: 440+480 Hz, 2 s on, 4 s off.
func TestToneCadence(t *testing.T) {
	src := NewTone(Tone{Freqs: []float64{440, 480}, On: 2 * time.Second, Off: 4 * time.Second, Duration: 13 * time.Second})
	f := media.NewFrame(8000)
	var pattern []bool
	var all []int16
	for {
		err := src.ReadFrame(f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		on := dsp.RMS(f.Samples) > 1000
		if !on && dsp.RMS(f.Samples) != 0 {
			t.Fatalf("frame %d is neither tone nor silence", len(pattern))
		}
		pattern = append(pattern, on)
		all = append(all, f.Samples...)
	}
	if len(pattern) != 650 {
		t.Fatalf("%d frames for 13 s", len(pattern))
	}
	// The second burst (6..8 s) holds both components at full level.
	burst := all[6*8000 : 8*8000]
	for _, fr := range []float64{440, 480} {
		if p := dsp.GoertzelPower(burst, 8000, fr); math.Abs(p-8000*8000/2) > 0.02*8000*8000/2 {
			t.Errorf("power at %g Hz %.0f in the second burst", fr, p)
		}
	}
	for i, on := range pattern {
		want := (i % 300) < 100 // 100 frames on, 200 off
		if on != want {
			t.Fatalf("frame %d (%.2f s): on=%v, want %v", i, float64(i)/50, on, want)
		}
	}
	// On without Off is continuous.
	s, _ := mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{440}, On: time.Second, Duration: 3 * time.Second}), 8000, 1000)
	for i := 0; i+160 <= len(s); i += 160 {
		if dsp.RMS(s[i:i+160]) < 1000 {
			t.Fatalf("On without Off: frame %d silent", i/160)
		}
	}
	// A cadence that switches mid-frame switches at the right sample.
	s, _ = mediatest.ReadFrames(t, NewTone(Tone{Freqs: []float64{1000}, On: 30 * time.Millisecond, Off: 10 * time.Millisecond, Duration: 80 * time.Millisecond}), 8000, 10)
	for _, seg := range []struct {
		lo, hi int
		on     bool
	}{{0, 240, true}, {240, 320, false}, {320, 560, true}, {560, 640, false}} {
		if on := dsp.RMS(s[seg.lo:seg.hi]) > 1000; on != seg.on || (!on && dsp.RMS(s[seg.lo:seg.hi]) != 0) {
			t.Errorf("samples %d..%d: RMS %.0f, want on=%v", seg.lo, seg.hi, dsp.RMS(s[seg.lo:seg.hi]), seg.on)
		}
	}
}

func TestToneRewindAndFrames(t *testing.T) {
	src := NewTone(Tone{Freqs: []float64{700}, Duration: 100 * time.Millisecond})
	a, _ := mediatest.ReadFrames(t, src, 8000, 100)
	src.Rewind()
	b, _ := mediatest.ReadFrames(t, src, 8000, 100)
	if !slices.Equal(a, b) {
		t.Fatal("rewound tone differs")
	}
	// A frame without a buffer gets one; a frame of the wrong size is resized.
	f := &media.Frame{Rate: 16000}
	if err := NewTone(Tone{Freqs: []float64{700}}).ReadFrame(f); err != nil || len(f.Samples) != 320 {
		t.Fatalf("bare frame: %v, %d samples", err, len(f.Samples))
	}
	f.Rate = 8000
	if err := NewTone(Tone{Freqs: []float64{700}}).ReadFrame(f); err != nil || len(f.Samples) != 160 {
		t.Fatalf("resized frame: %v, %d samples", err, len(f.Samples))
	}
	if err := NewTone(Tone{Freqs: []float64{700}}).ReadFrame(&media.Frame{}); err == nil {
		t.Fatal("rate 0 accepted")
	}
	// The Tone's slice is copied: changing it later changes nothing.
	freqs := []float64{700}
	src = NewTone(Tone{Freqs: freqs, Duration: 100 * time.Millisecond})
	freqs[0] = 1500
	if c, _ := mediatest.ReadFrames(t, src, 8000, 100); !slices.Equal(a, c) {
		t.Fatal("tone follows the caller's slice")
	}
}

// neverSource is empty even after a rewind.
type neverSource struct{ rewinds int }

func (*neverSource) ReadFrame(*media.Frame) error { return io.EOF }
func (s *neverSource) Rewind()                    { s.rewinds++ }

// failingSource always fails with err.
type failingSource struct{ err error }

func (s failingSource) ReadFrame(*media.Frame) error { return s.err }
func (failingSource) Rewind()                        {}

func BenchmarkToneFrame(b *testing.B) {
	src := NewTone(Tone{Freqs: []float64{440, 480}})
	f := media.NewFrame(8000)
	b.ReportAllocs()
	for b.Loop() {
		if err := src.ReadFrame(f); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSinCyclesAccuracy(t *testing.T) {
	worst := 0.0
	for i := range 100000 {
		p := float64(i) / 100000
		worst = max(worst, math.Abs(sinCycles(p)-math.Sin(2*math.Pi*p)))
	}
	if worst > 1e-6 {
		t.Fatalf("sine table error %g", worst)
	}
}
