package dsp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// addNoise adds uniform white noise of peak amp, reproducibly for seed.
func addNoise(s []int16, amp float64, seed uint64) []int16 {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]int16, len(s))
	for i, v := range s {
		out[i] = Clip16(float64(v) + amp*(2*rng.Float64()-1))
	}
	return out
}

func TestDominantFrequencyFindsNoisyTones(t *testing.T) {
	for _, rate := range []int{8000, 16000} {
		for _, freq := range []float64{350, 440, 1000, 1633, 3000} {
			for _, ms := range []int{20, 200, 1000} {
				n := rate * ms / 1000
				name := fmt.Sprintf("%dHz/%gHz/%dms", rate, freq, ms)
				t.Run(name, func(t *testing.T) {
					s := addNoise(Sine(rate, freq, 8000, n, 0.3), 3000, uint64(freq)+uint64(rate))
					got, p := DominantFrequency(s, rate, 100, 3800, 10)
					if math.Abs(got-freq) > 5 {
						t.Fatalf("found %.2f Hz, want %g ± 5", got, freq)
					}
					// Tone power is 8000²/2; the noise adds little at one frequency.
					if want := 8000.0 * 8000 / 2; p < 0.8*want || p > 1.2*want {
						t.Errorf("power %.0f, want about %.0f", p, want)
					}
				})
			}
		}
	}
}

// Tones midway between the coarse scan's frequencies must not hide in the
// nulls of a long window.
func TestDominantFrequencyOffGrid(t *testing.T) {
	for _, freq := range []float64{1005, 1234.5, 2995} {
		for _, n := range []int{1600, 8000, 24000} {
			s := addNoise(Sine(8000, freq, 4000, n, 1), 1000, uint64(n))
			got, _ := DominantFrequency(s, 8000, 100, 3800, 10)
			if math.Abs(got-freq) > 1 {
				t.Errorf("%g Hz over %d samples: found %.2f", freq, n, got)
			}
		}
	}
}

func TestDominantFrequencyPicksLouderOfTwo(t *testing.T) {
	a := Sine(8000, 697, 3000, 1600, 0)
	b := Sine(8000, 1209, 6000, 1600, 0)
	for i := range a {
		a[i] += b[i]
	}
	if got, _ := DominantFrequency(a, 8000, 100, 3800, 10); math.Abs(got-1209) > 5 {
		t.Fatalf("found %.2f Hz, want 1209", got)
	}
	// Restricted to a range, the weaker one is found.
	if got, _ := DominantFrequency(a, 8000, 600, 800, 10); math.Abs(got-697) > 5 {
		t.Fatalf("found %.2f Hz in 600..800, want 697", got)
	}
}

func TestDominantFrequencyDegenerate(t *testing.T) {
	s := Sine(8000, 1000, 8000, 160, 0)
	for _, tc := range []struct {
		name         string
		s            []int16
		rate         int
		lo, hi, step float64
	}{
		{"empty", nil, 8000, 100, 3800, 10},
		{"zero rate", s, 0, 100, 3800, 10},
		{"zero step", s, 8000, 100, 3800, 0},
		{"negative step", s, 8000, 100, 3800, -10},
		{"NaN step", s, 8000, 100, 3800, math.NaN()},
		{"hi below lo", s, 8000, 3000, 100, 10},
		{"above Nyquist", s, 8000, 5000, 6000, 10},
	} {
		if f, p := DominantFrequency(tc.s, tc.rate, tc.lo, tc.hi, tc.step); f != 0 || p != 0 {
			t.Errorf("%s: got (%g, %g), want (0, 0)", tc.name, f, p)
		}
	}
	// A single sample or silence must not panic or return NaN.
	for _, s := range [][]int16{{1000}, make([]int16, 160)} {
		f, p := DominantFrequency(s, 8000, 100, 3800, 10)
		if math.IsNaN(f) || math.IsNaN(p) {
			t.Errorf("%d samples: got NaN (%g, %g)", len(s), f, p)
		}
	}
}

func TestGoertzelPowerScale(t *testing.T) {
	s := Sine(8000, 1000, 10000, 800, 0)
	if p, want := GoertzelPower(s, 8000, 1000), 10000.0*10000/2; math.Abs(p-want) > 0.01*want {
		t.Errorf("power at the tone %.0f, want %.0f", p, want)
	}
	if p := GoertzelPower(s, 8000, 1500); p > 1e-4*10000*10000 {
		t.Errorf("power 500 Hz away %.0f, want ~0", p)
	}
	if r := RMS(s); math.Abs(r-10000/math.Sqrt2) > 10 {
		t.Errorf("RMS %.1f, want %.1f", r, 10000/math.Sqrt2)
	}
	if p := GoertzelPower(nil, 8000, 1000); p != 0 {
		t.Errorf("power of nothing %g", p)
	}
}

func TestRMS(t *testing.T) {
	for _, tc := range []struct {
		s    []int16
		want float64
	}{
		{nil, 0},
		{make([]int16, 160), 0},
		{[]int16{3, -3, 3, -3}, 3},
		{[]int16{-32768}, 32768},
		{[]int16{3, 4}, math.Sqrt(12.5)},
	} {
		if got := RMS(tc.s); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("RMS(%v) = %g, want %g", tc.s, got, tc.want)
		}
	}
}

func BenchmarkDominantFrequency(b *testing.B) {
	for _, n := range []int{160, 1600, 8000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := addNoise(Sine(8000, 1000, 8000, n, 0), 1000, 1)
			b.ReportAllocs()
			for b.Loop() {
				DominantFrequency(s, 8000, 100, 3800, 10)
			}
		})
	}
}
