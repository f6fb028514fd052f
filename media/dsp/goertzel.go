package dsp

import "math"

// GoertzelPower returns the power of samples at freq Hz, measured with the
// Goertzel algorithm over the whole slice (a rectangular window) and
// normalised to the mean power of a sinusoid: a pure tone of peak amplitude
// A at freq yields about A²/2, which is RMS² of that tone, so
// GoertzelPower/RMS² is the share of the signal's power found at freq. It
// returns 0 for an empty slice or a non-positive rate.
func GoertzelPower(samples []int16, rate int, freq float64) float64 {
	if len(samples) == 0 || rate <= 0 {
		return 0
	}
	coeff := 2 * math.Cos(2*math.Pi*freq/float64(rate))
	var s1, s2 float64
	for _, x := range samples {
		s1, s2 = float64(x)+coeff*s1-s2, s1
	}
	return goertzelNorm(s1, s2, coeff, len(samples))
}

// goertzelFloat is GoertzelPower over float samples (already windowed).
func goertzelFloat(x []float64, coeff float64) float64 {
	var s1, s2 float64
	for _, v := range x {
		s1, s2 = v+coeff*s1-s2, s1
	}
	return goertzelNorm(s1, s2, coeff, len(x))
}

// Goertzel4 returns the Goertzel power of x at four frequencies at once,
// given as coefficients 2·cos(2πf/rate), normalised as GoertzelPower
// (the in-band DTMF detector's inner loop: one pass, no allocation).
func Goertzel4(x []float64, coeff *[4]float64) (p [4]float64) {
	c0, c1, c2, c3 := coeff[0], coeff[1], coeff[2], coeff[3]
	var a1, a2, b1, b2, c1s, c2s, d1, d2 float64
	for _, v := range x {
		a1, a2 = v+c0*a1-a2, a1
		b1, b2 = v+c1*b1-b2, b1
		c1s, c2s = v+c2*c1s-c2s, c1s
		d1, d2 = v+c3*d1-d2, d1
	}
	n := len(x)
	return [4]float64{
		goertzelNorm(a1, a2, c0, n), goertzelNorm(b1, b2, c1, n),
		goertzelNorm(c1s, c2s, c2, n), goertzelNorm(d1, d2, c3, n),
	}
}

func goertzelNorm(s1, s2, coeff float64, n int) float64 {
	p := s1*s1 + s2*s2 - coeff*s1*s2 // |X(f)|²
	if p < 0 {
		p = 0 // rounding
	}
	return 2 * p / (float64(n) * float64(n))
}

// DominantFrequency finds the frequency between lo and hi Hz where samples
// have the most power, and returns it with GoertzelPower at that frequency.
//
// It first scans lo..hi every step Hz, averaging Hann-windowed Goertzel
// powers over overlapping blocks short enough that no tone can fall between
// two scanned frequencies, then rescans the whole slice every 1 Hz within a
// step of the best candidate and interpolates the peak, so a clean tone is
// located to well within ±1 Hz given a few hundred samples or more. hi is
// capped at the Nyquist frequency rate/2. It returns (0, 0) when there is
// nothing to analyse (no samples, a non-positive rate or step, or hi < lo).
// It allocates scratch space: it is meant for tests and monitoring, not for
// every frame on the media path.
func DominantFrequency(samples []int16, rate int, lo, hi, step float64) (freq float64, power float64) {
	n := len(samples)
	if n == 0 || rate <= 0 || !(step > 0) || math.IsNaN(lo) || math.IsNaN(hi) {
		return 0, 0
	}
	fs := float64(rate)
	lo = max(lo, 0)
	hi = min(hi, fs/2)
	if hi < lo {
		return 0, 0
	}
	step = max(step, (hi-lo)/1e5) // bound the work for absurdly fine steps

	// Coarse scan. A Hann window's main lobe spans ±2 bins of fs/L Hz, so a
	// block of L ≤ 2·fs/step samples keeps every tone within reach of a
	// scanned frequency (at worst 6 dB down) instead of hiding it in a null.
	blockLen := min(n, max(16, int(2*fs/step)))
	hop := max(1, blockLen/2)
	var blocks [][]float64
	for off := 0; off+blockLen <= n; off += hop {
		blocks = append(blocks, hannWindowed(samples[off:off+blockLen]))
	}
	best, bestP := lo, -1.0
	nFreq := int(math.Floor((hi-lo)/step+1e-9)) + 1
	for i := 0; i < nFreq; i += 4 {
		// Four frequencies per pass: independent recurrences run in parallel.
		var f, coeff, p [4]float64
		for k := range 4 {
			f[k] = lo + float64(min(i+k, nFreq-1))*step
			coeff[k] = 2 * math.Cos(2*math.Pi*f[k]/fs)
		}
		for _, b := range blocks {
			q := Goertzel4(b, &coeff)
			for k := range 4 {
				p[k] += q[k]
			}
		}
		for k := range 4 {
			if p[k] > bestP {
				best, bestP = f[k], p[k]
			}
		}
	}

	// Fine scan over the whole slice, 1 Hz apart, then a parabola through
	// the log powers around the maximum.
	w := hannWindowed(samples)
	fineLo, fineHi := max(lo, best-step), min(hi, best+step)
	fine := func(f float64) float64 { return goertzelFloat(w, 2*math.Cos(2*math.Pi*f/fs)) }
	freq, bestP = best, -1
	for f := fineLo; f <= fineHi+1e-9; f++ {
		if p := fine(f); p > bestP {
			freq, bestP = f, p
		}
	}
	if freq-1 >= lo && freq+1 <= hi && bestP > 0 {
		a, c := fine(freq-1), fine(freq+1)
		if a > 0 && c > 0 {
			la, lb, lc := math.Log(a), math.Log(bestP), math.Log(c)
			if d := la - 2*lb + lc; d < 0 {
				if off := 0.5 * (la - lc) / d; off > -1 && off < 1 {
					freq += off
				}
			}
		}
	}
	return freq, GoertzelPower(samples, rate, freq)
}

// hannWindowed returns samples multiplied by a Hann window, normalised so
// that a windowed tone keeps the power scale of GoertzelPower.
func hannWindowed(samples []int16) []float64 {
	n := len(samples)
	out := make([]float64, n)
	if n == 1 {
		out[0] = float64(samples[0])
		return out
	}
	// The Hann window's coherent gain is 1/2; scale by 2 to undo it.
	k := 2 * math.Pi / float64(n-1)
	for i, x := range samples {
		out[i] = float64(x) * (1 - math.Cos(k*float64(i)))
	}
	return out
}

// RMS returns the root-mean-square level of samples (0 for an empty slice
// or digital silence); full-scale is 32767.
func RMS(samples []int16) float64 {
	if len(samples) == 0 {
		return 0
	}
	var sum float64
	for _, x := range samples {
		v := float64(x)
		sum += v * v
	}
	return math.Sqrt(sum / float64(len(samples)))
}

// Sine returns n samples of a sine of freq Hz at rate, peak amp, starting
// at phase (radians): a test signal.
func Sine(rate int, freq, amp float64, n int, phase float64) []int16 {
	out := make([]int16, n)
	for i := range out {
		out[i] = Clip16(amp * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)+phase))
	}
	return out
}
