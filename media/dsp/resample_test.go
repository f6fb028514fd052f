package dsp

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

// resampleFrames runs src through r in 20 ms frames of the input rate.
func resampleFrames(r *Resampler, src []int16, fromRate int) []int16 {
	var out []int16
	n := fromRate / 50
	for off := 0; off < len(src); off += n {
		out = r.Process(out, src[off:min(off+n, len(src))])
	}
	return out
}

func db(ratio float64) float64 { return 20 * math.Log10(ratio) }

func TestResamplerToneThroughChain(t *testing.T) {
	in := Sine(8000, 1000, 10000, 8000, 0) // 1 s
	stages := []struct{ from, to int }{{8000, 16000}, {16000, 48000}, {48000, 8000}}
	s := in
	for _, st := range stages {
		r := NewResampler(st.from, st.to)
		s = resampleFrames(r, s, st.from)
		if want := len(in) * st.to / 8000; len(s) != want {
			t.Fatalf("%d->%d: %d samples, want %d", st.from, st.to, len(s), want)
		}
		tail := s[len(s)/4:] // past the filters' start-up
		f, p := DominantFrequency(tail, st.to, 100, 3800, 10)
		if math.Abs(f-1000) > 5 {
			t.Fatalf("%d->%d: dominant %.1f Hz", st.from, st.to, f)
		}
		if g := db(RMS(tail) / RMS(in)); math.Abs(g) > 0.2 {
			t.Errorf("%d->%d: level changed by %.2f dB", st.from, st.to, g)
		}
		if share := p / (RMS(tail) * RMS(tail)); share < 0.999 {
			t.Errorf("%d->%d: only %.5f of the power at 1 kHz", st.from, st.to, share)
		}
	}
}

func TestResamplerRemovesContentAboveNyquist(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		freq     float64
		minDB    float64
	}{
		{16000, 8000, 6000, 20},
		{16000, 8000, 4500, 20},
		{48000, 8000, 5000, 20},
		{48000, 8000, 20000, 20},
		{48000, 16000, 10000, 20},
	} {
		t.Run(fmt.Sprintf("%d-%d-%g", tc.from, tc.to, tc.freq), func(t *testing.T) {
			in := Sine(tc.from, tc.freq, 10000, tc.from/2, 0)
			out := resampleFrames(NewResampler(tc.from, tc.to), in, tc.from)
			tail := out[len(out)/4:]
			att := -db(RMS(tail) / RMS(in))
			t.Logf("attenuation %.1f dB", att)
			if att < tc.minDB {
				t.Fatalf("attenuated by %.1f dB, want ≥ %g", att, tc.minDB)
			}
		})
	}
}

func TestResamplerPassband(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		freq     float64
	}{
		{16000, 8000, 300}, {16000, 8000, 3000}, {48000, 8000, 3000},
		{8000, 16000, 3000}, {8000, 48000, 3000}, {48000, 16000, 6000}, {16000, 48000, 6000},
	} {
		in := Sine(tc.from, tc.freq, 10000, tc.from/2, 0)
		out := resampleFrames(NewResampler(tc.from, tc.to), in, tc.from)
		tail := out[len(out)/4:]
		g := db(RMS(tail) / RMS(in))
		t.Logf("%d->%d at %g Hz: gain %.3f dB", tc.from, tc.to, tc.freq, g)
		if math.Abs(g) > 0.5 {
			t.Errorf("%d->%d at %g Hz: gain %.2f dB", tc.from, tc.to, tc.freq, g)
		}
		if f, _ := DominantFrequency(tail, tc.to, 100, min(float64(tc.to)/2, 7000), 10); math.Abs(f-tc.freq) > 5 {
			t.Errorf("%d->%d at %g Hz: dominant %.1f Hz", tc.from, tc.to, tc.freq, f)
		}
	}
}

// Upsampling must not leave images of the input spectrum above its Nyquist
// frequency (a 1 kHz tone at 8 kHz mirrors to 7, 9, 15, 17… kHz).
func TestResamplerUpsamplingRejectsImages(t *testing.T) {
	in := Sine(8000, 1000, 10000, 8000, 0)
	out := resampleFrames(NewResampler(8000, 48000), in, 8000)
	tail := out[len(out)/4:]
	ref := GoertzelPower(tail, 48000, 1000)
	for _, img := range []float64{7000, 9000, 15000, 17000, 23000} {
		if rel := 10 * math.Log10(GoertzelPower(tail, 48000, img)/ref); rel > -40 {
			t.Errorf("image at %g Hz only %.1f dB down", img, rel)
		}
	}
}

// Converting frame by frame gives exactly what converting in one go gives:
// the Resampler carries its history across frames, so there are no clicks.
func TestResamplerFramesMatchWhole(t *testing.T) {
	for _, tc := range []struct{ from, to int }{
		{8000, 16000}, {8000, 48000}, {16000, 48000}, {16000, 8000}, {48000, 8000}, {48000, 16000}, {8000, 8000},
	} {
		in := addNoise(Sine(tc.from, 700, 9000, tc.from/5, 0), 2000, 1)
		whole := NewResampler(tc.from, tc.to).Process(nil, in)
		framed := resampleFrames(NewResampler(tc.from, tc.to), in, tc.from)
		if !slices.Equal(whole, framed) {
			t.Errorf("%d->%d: framed output differs from whole", tc.from, tc.to)
		}
		// Odd-sized pieces too.
		r := NewResampler(tc.from, tc.to)
		var odd []int16
		for off, n := 0, 1; off < len(in); off, n = off+n, n%37+1 {
			odd = r.Process(odd, in[off:min(off+n, len(in))])
		}
		if !slices.Equal(whole, odd) {
			t.Errorf("%d->%d: output in odd pieces differs from whole", tc.from, tc.to)
		}
	}
}

// The frame-to-frame continuity shows in the waveform: a tone converted
// frame by frame never jumps by more than the tone itself can.
func TestResamplerNoClicksAtFrameBoundaries(t *testing.T) {
	in := Sine(8000, 440, 12000, 4000, 0)
	out := resampleFrames(NewResampler(8000, 48000), in, 8000)
	maxStep := 12000 * 2 * math.Pi * 440 / 48000 * 1.05
	for i := 200; i < len(out); i++ {
		if d := math.Abs(float64(out[i]) - float64(out[i-1])); d > maxStep {
			t.Fatalf("jump of %.0f at sample %d (frame boundary: %v)", d, i, i%960 == 0)
		}
	}
}

func TestResampleStateless(t *testing.T) {
	for _, tc := range []struct{ from, to int }{
		{8000, 16000}, {8000, 48000}, {16000, 8000}, {48000, 8000}, {48000, 16000}, {16000, 16000},
	} {
		in := Sine(tc.from, 1000, 10000, tc.from/10, 0.5)
		prefix := []int16{1, 2, 3}
		out := Resample(slices.Clone(prefix), in, tc.from, tc.to)
		if !slices.Equal(out[:3], prefix) {
			t.Fatalf("%d->%d: did not append", tc.from, tc.to)
		}
		out = out[3:]
		if want := len(in) * tc.to / tc.from; len(out) != want {
			t.Fatalf("%d->%d: %d samples, want %d", tc.from, tc.to, len(out), want)
		}
		// The delay is compensated: away from the edges (where the outside
		// is taken as silence) the output matches the ideal tone.
		ideal := Sine(tc.to, 1000, 10000, len(out), 0.5)
		edge := tc.to / 200 // 5 ms
		worst := 0.0
		for i := edge; i < len(out)-edge; i++ {
			worst = max(worst, math.Abs(float64(out[i])-float64(ideal[i])))
		}
		t.Logf("%d->%d: worst deviation %.0f", tc.from, tc.to, worst)
		if worst > 20 {
			t.Errorf("%d->%d: deviates from the ideal tone by %.0f", tc.from, tc.to, worst)
		}
	}
	// Lengths that are not a multiple of the ratio round up.
	if got := len(Resample(nil, make([]int16, 7), 48000, 8000)); got != 2 {
		t.Errorf("7 samples 48k->8k gave %d, want 2", got)
	}
	if got := Resample(nil, nil, 8000, 48000); len(got) != 0 {
		t.Errorf("nothing resampled to %d samples", len(got))
	}
}

func TestResamplerReset(t *testing.T) {
	in := Sine(16000, 1000, 10000, 320, 0)
	r := NewResampler(16000, 8000)
	first := r.Process(nil, in)
	r.Process(nil, in)
	r.Reset()
	if again := r.Process(nil, in); !slices.Equal(first, again) {
		t.Fatal("Reset did not forget the history")
	}
}

func TestResamplerRates(t *testing.T) {
	for _, tc := range []struct {
		from, to int
		ok       bool
		delay    int
	}{
		{8000, 16000, true, resampleTaps / 2},
		{48000, 8000, true, resampleTaps * 3},
		{16000, 8000, true, resampleTaps},
		{8000, 8000, true, 0},
		{8000, 32000, true, resampleTaps / 2},
		{44100, 8000, false, 0},
		{8000, 12000, false, 0},
		{0, 8000, false, 0},
		{8000, -8000, false, 0},
	} {
		if got := CanResample(tc.from, tc.to); got != tc.ok {
			t.Errorf("CanResample(%d, %d) = %v", tc.from, tc.to, got)
		}
		func() {
			defer func() {
				if p := recover(); (p == nil) != tc.ok {
					t.Errorf("NewResampler(%d, %d) panic: %v", tc.from, tc.to, p)
				}
			}()
			if d := NewResampler(tc.from, tc.to).Delay(); d != tc.delay {
				t.Errorf("NewResampler(%d, %d).Delay() = %d, want %d", tc.from, tc.to, d, tc.delay)
			}
		}()
	}
	// A ratio without a prebuilt filter still works.
	in := Sine(8000, 1000, 10000, 8000, 0)
	out := resampleFrames(NewResampler(8000, 32000), in, 8000)
	if f, _ := DominantFrequency(out[len(out)/4:], 32000, 100, 3800, 10); math.Abs(f-1000) > 5 {
		t.Errorf("8k->32k: dominant %.1f Hz", f)
	}
}

func TestResamplerDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{8000, 48000}, {48000, 8000}, {16000, 8000}} {
		r := NewResampler(tc.from, tc.to)
		in := Sine(tc.from, 1000, 8000, tc.from/50, 0)
		out := make([]int16, 0, tc.to/50)
		out = r.Process(out[:0], in) // grows the internal buffer once
		if n := testing.AllocsPerRun(100, func() { out = r.Process(out[:0], in) }); n != 0 {
			t.Errorf("%d->%d: Process allocates %.1f times per frame", tc.from, tc.to, n)
		}
	}
}

func BenchmarkResampler(b *testing.B) {
	for _, tc := range []struct{ from, to int }{{8000, 48000}, {48000, 8000}, {8000, 16000}, {16000, 8000}} {
		b.Run(fmt.Sprintf("%d-%d", tc.from, tc.to), func(b *testing.B) {
			r := NewResampler(tc.from, tc.to)
			in := Sine(tc.from, 1000, 8000, tc.from/50, 0)
			out := make([]int16, 0, tc.to/50)
			b.ReportAllocs()
			for b.Loop() {
				out = r.Process(out[:0], in)
			}
		})
	}
}
