package dsp

import (
	"fmt"
	"math"
)

// maxRationalPhases bounds the filter table of ResampleRational: the output
// rate divided by the rates' greatest common divisor (160 for 22050 to
// 8000 Hz, 320 for 22050 to 48000 Hz).
const maxRationalPhases = 2048

// ResampleRational converts src from fromRate to toRate Hz in one piece, for
// rates that are not integer multiples of each other (espeak-ng speaks at
// 22050 Hz, telephony runs at 8000, 16000 or 48000 Hz), and appends the
// result to dst: ceil(len(src)·toRate/fromRate) samples, aligned so output
// sample i is input time i/toRate (no filter delay).
//
// It is a polyphase windowed-sinc filter with the same shape as Resampler's
// (cut-off at 0.45 of the lower rate, Kaiser window, 32 taps of the lower
// rate), one phase per distinct output position between two inputs.
// Samples outside src are taken as zero. It builds its filter table on each
// call (up to a few hundred kilobytes) and is meant for audio converted once
// and cached, such as synthesised speech, not for the per-frame media path.
func ResampleRational(dst, src []int16, fromRate, toRate int) ([]int16, error) {
	if fromRate <= 0 || toRate <= 0 {
		return dst, fmt.Errorf("dsp: cannot resample %d Hz to %d Hz", fromRate, toRate)
	}
	if fromRate == toRate {
		return append(dst, src...), nil
	}
	g := gcd(fromRate, toRate)
	up, down := toRate/g, fromRate/g // output n is at input time n·down/up
	if up > maxRationalPhases {
		return dst, fmt.Errorf("dsp: cannot resample %d Hz to %d Hz: ratio %d/%d too fine", fromRate, toRate, up, down)
	}
	lower := min(fromRate, toRate)
	fc := resampleCutoff * float64(lower) / float64(fromRate) // cycles per input sample
	// Half the filter's span in input samples: resampleTaps/2 samples of
	// the lower rate.
	half := int(math.Ceil(float64(resampleTaps/2) * float64(fromRate) / float64(lower)))
	width := 2 * half
	// Phase p is for outputs whose position is k + p/up inputs; its taps
	// weigh inputs k-half+1 … k+half.
	table := make([]float32, up*width)
	i0b := besselI0(resampleBeta)
	for p := range up {
		frac := float64(p) / float64(up)
		row := table[p*width : (p+1)*width]
		sum := 0.0
		for j := range row {
			t := float64(j-half+1) - frac // input position minus output position
			sinc := 2 * fc
			if t != 0 {
				sinc = math.Sin(2*math.Pi*fc*t) / (math.Pi * t)
			}
			r := t / float64(half)
			w := 0.0
			if r > -1 && r < 1 {
				w = besselI0(resampleBeta*math.Sqrt(1-r*r)) / i0b
			}
			row[j] = float32(sinc * w)
			sum += sinc * w
		}
		for j := range row { // unity gain at DC for every phase
			row[j] = float32(float64(row[j]) / sum)
		}
	}
	n := (len(src)*up + down - 1) / down
	base := len(dst)
	dst = growInt16(dst, n)
	out := dst[base:]
	for i := range out {
		pos := i * down
		k, p := pos/up, pos%up
		row := table[p*width : (p+1)*width]
		lo := k - half + 1
		var acc float32
		if lo >= 0 && lo+width <= len(src) {
			x := src[lo : lo+width]
			for j, h := range row {
				acc += h * float32(x[j])
			}
		} else {
			for j, h := range row {
				if s := lo + j; s >= 0 && s < len(src) {
					acc += h * float32(src[s])
				}
			}
		}
		out[i] = Clip16(float64(acc))
	}
	return dst, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
