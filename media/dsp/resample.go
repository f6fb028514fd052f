package dsp

import (
	"fmt"
	"math"
)

// Sample-rate conversion by an integer factor (8000, 16000 and 48000 Hz are
// 2, 3 or 6 apart) with a polyphase windowed-sinc FIR filter. The prototype
// filter runs at the higher of the two rates, spans resampleTaps samples of
// the lower one, cuts off at 0.45 of the lower rate (3.6 kHz between 8 and
// 16 kHz) and is shaped by a Kaiser window for about 70 dB of stop-band
// rejection. The same filter serves as the anti-alias filter when
// downsampling and as the anti-image (interpolation) filter when upsampling.

const (
	resampleTaps   = 32   // filter length in samples of the lower rate (even)
	resampleCutoff = 0.45 // cut-off as a fraction of the lower rate
	resampleBeta   = 7.0  // Kaiser window shape
)

// resampleFilter is the read-only filter for one integer ratio.
type resampleFilter struct {
	ratio int
	// down holds the K = resampleTaps·ratio+1 taps of the prototype, which
	// is symmetric and sums to 1.
	down []float32
	// up holds ratio phases of resampleTaps+1 taps each, phase p at
	// up[p*(resampleTaps+1):], taps in input order (oldest sample first)
	// and scaled so each phase has unity gain at DC.
	up []float32
}

// resampleFilters holds the filters for the ratios between 8, 16 and 48 kHz,
// built once at package initialisation and never modified.
var resampleFilters = [...]*resampleFilter{
	newResampleFilter(2),
	newResampleFilter(3),
	newResampleFilter(6),
}

func filterFor(ratio int) *resampleFilter {
	for _, f := range resampleFilters {
		if f.ratio == ratio {
			return f
		}
	}
	return newResampleFilter(ratio)
}

func newResampleFilter(ratio int) *resampleFilter {
	k := resampleTaps*ratio + 1
	center := float64(k-1) / 2
	fc := resampleCutoff / float64(ratio) // cycles per high-rate sample
	h := make([]float64, k)
	sum := 0.0
	for i := range h {
		t := float64(i) - center
		sinc := 2 * fc
		if t != 0 {
			sinc = math.Sin(2*math.Pi*fc*t) / (math.Pi * t)
		}
		r := t / center
		h[i] = sinc * besselI0(resampleBeta*math.Sqrt(max(0, 1-r*r))) / besselI0(resampleBeta)
		sum += h[i]
	}
	f := &resampleFilter{ratio: ratio, down: make([]float32, k)}
	for i := range h {
		h[i] /= sum
		f.down[i] = float32(h[i])
	}
	// Phase p produces output ratio·j+p from inputs j, j-1, …, j-resampleTaps
	// with taps h[p], h[p+ratio], …; stored oldest input first, zero-padded
	// beyond the prototype's end, and scaled by ratio to restore the gain
	// lost to zero stuffing.
	n := resampleTaps + 1
	f.up = make([]float32, ratio*n)
	for p := 0; p < ratio; p++ {
		for q := 0; q < n; q++ {
			if i := p + q*ratio; i < k {
				f.up[p*n+(n-1-q)] = float32(h[i] * float64(ratio))
			}
		}
	}
	return f
}

// besselI0 is the modified Bessel function of the first kind, order 0.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / 2) / float64(k)
		sum += term * term
		if term*term < sum*1e-17 {
			break
		}
	}
	return sum
}

// Resampler converts a stream of mono 16-bit samples between two sample
// rates that are integer multiples of each other, such as 8000, 16000 and
// 48000 Hz. It keeps the tail of the input between calls, so a stream fed
// to it 20 ms frame by 20 ms frame comes out exactly as if it had been
// converted in one piece: no clicks at frame boundaries. Downsampling
// low-pass filters at 0.45 of the output rate first, so content above the
// new Nyquist frequency is removed rather than aliased; upsampling
// interpolates with the same filter.
//
// The filter delays the signal by Delay() input samples (16 samples of the
// lower rate: 2 ms at 8 kHz). A Resampler is not safe for concurrent use; use one per stream.
type Resampler struct {
	up, down int // one of them is 1
	filt     *resampleFilter
	hist     []float32 // the last inputs, oldest first; len is the filter's memory
	work     []float32 // hist followed by the current input
	phase    int       // downsampling: inputs since the last output, mod down
}

// NewResampler returns a Resampler from fromRate to toRate Hz. The rates
// must be positive and one must be an integer multiple of the other (equal
// rates just copy); NewResampler panics otherwise, since rates come from
// the program rather than from its input. Use CanResample to check rates
// that come from outside.
func NewResampler(fromRate, toRate int) *Resampler {
	if !CanResample(fromRate, toRate) {
		panic(fmt.Sprintf("dsp: cannot resample %d Hz to %d Hz", fromRate, toRate))
	}
	r := &Resampler{up: 1, down: 1}
	switch {
	case toRate > fromRate:
		r.up = toRate / fromRate
		r.filt = filterFor(r.up)
		r.hist = make([]float32, resampleTaps)
	case toRate < fromRate:
		r.down = fromRate / toRate
		r.filt = filterFor(r.down)
		r.hist = make([]float32, len(r.filt.down)-1)
	}
	return r
}

// CanResample reports whether a Resampler can convert between the rates:
// both positive, one an integer multiple of the other.
func CanResample(fromRate, toRate int) bool {
	if fromRate <= 0 || toRate <= 0 {
		return false
	}
	return fromRate%toRate == 0 || toRate%fromRate == 0
}

// Delay returns how many input samples the output lags the input by: the
// filter's group delay (0 when the rates are equal).
func (r *Resampler) Delay() int {
	switch {
	case r.up > 1:
		return resampleTaps / 2
	case r.down > 1:
		return resampleTaps * r.down / 2
	}
	return 0
}

// Reset forgets the input seen so far, as if the Resampler were new.
func (r *Resampler) Reset() {
	clear(r.hist)
	r.phase = 0
}

// Process converts src, the next stretch of the input stream, and appends
// the resulting samples to dst. Upsampling by n yields n·len(src) samples;
// downsampling by n yields one sample per n inputs, so a 20 ms frame at the
// input rate yields exactly a 20 ms frame at the output rate. Once its
// internal buffer has grown to the frame size, Process does not allocate
// when dst has room for the output.
func (r *Resampler) Process(dst, src []int16) []int16 {
	if r.up == 1 && r.down == 1 {
		return append(dst, src...)
	}
	if len(src) == 0 {
		return dst
	}
	h := len(r.hist)
	if cap(r.work) < h+len(src) {
		r.work = make([]float32, h+len(src))
	}
	w := r.work[:h+len(src)]
	copy(w, r.hist)
	for i, v := range src {
		w[h+i] = float32(v)
	}
	if r.up > 1 {
		n := resampleTaps + 1
		base := len(dst)
		dst = growInt16(dst, len(src)*r.up)
		out := dst[base:]
		for j := range src {
			x := w[j : j+n] // inputs j-resampleTaps … j of the stream
			for p := 0; p < r.up; p++ {
				out[j*r.up+p] = dotSample(r.filt.up[p*n:(p+1)*n], x)
			}
		}
	} else {
		taps := r.filt.down
		for j := range src {
			if r.phase == 0 {
				dst = append(dst, dotSample(taps, w[j:j+len(taps)]))
			}
			r.phase++
			if r.phase == r.down {
				r.phase = 0
			}
		}
	}
	copy(r.hist, w[len(w)-h:])
	return dst
}

// dotSample returns the filter output Σ taps[i]·x[i], rounded and clipped
// to 16 bits. x must be at least as long as taps.
func dotSample(taps, x []float32) int16 {
	x = x[:len(taps)]
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+3 < len(taps); i += 4 {
		a0 += taps[i] * x[i]
		a1 += taps[i+1] * x[i+1]
		a2 += taps[i+2] * x[i+2]
		a3 += taps[i+3] * x[i+3]
	}
	for ; i < len(taps); i++ {
		a0 += taps[i] * x[i]
	}
	return Clip16(float64((a0 + a1) + (a2 + a3)))
}

// Clip16 rounds v to the nearest int16, saturating.
func Clip16(v float64) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(v))
}

// growInt16 extends s by n elements (allocating only when capacity is short).
func growInt16(s []int16, n int) []int16 {
	if cap(s)-len(s) < n {
		t := make([]int16, len(s), len(s)+n+len(s)/4)
		copy(t, s)
		s = t
	}
	return s[:len(s)+n]
}

// Resample converts src from fromRate to toRate Hz in one piece and appends
// the result to dst: len(src)·toRate/fromRate samples (rounded up when
// downsampling a length that is not a multiple of the ratio). It is
// stateless: samples before the start and after the end of src are taken
// as zero, and the filter delay is compensated so output sample i lines up
// with input time i/toRate. To convert a stream frame by frame without
// edge effects at every frame, use a Resampler. Resample panics on rates
// NewResampler rejects.
func Resample(dst []int16, src []int16, fromRate, toRate int) []int16 {
	r := NewResampler(fromRate, toRate)
	if r.up == 1 && r.down == 1 {
		return append(dst, src...)
	}
	base := len(dst)
	dst = r.Process(dst, src)
	d := r.Delay()
	var zeros [resampleTaps * 6 / 2]int16
	for left := d; left > 0; {
		n := min(left, len(zeros))
		dst = r.Process(dst, zeros[:n])
		left -= n
	}
	// Drop the output that corresponds to the filter delay.
	skip := d * r.up / r.down
	copy(dst[base:], dst[base+skip:])
	return dst[:len(dst)-skip]
}

// RateConverter converts a stream whose rate may change, creating its
// Resampler on first use and again whenever the pair of rates changes. The
// zero value is ready. It backs the sinks and sources that sit between a
// leg and something running at a fixed rate (Pipe, Mixer participants,
// WAVRecorder), so a 16 kHz G.722 leg meets an 8 kHz one without either
// side noticing. Not safe for concurrent use.
type RateConverter struct {
	r        *Resampler
	from, to int
}

// Convert appends src (at from Hz) converted to to Hz to dst. It returns
// dst unchanged and false when the rates cannot be converted. Once the
// Resampler exists it does not allocate when dst has room for the output.
func (c *RateConverter) Convert(dst, src []int16, from, to int) ([]int16, bool) {
	if from == to {
		return append(dst, src...), true
	}
	if c.r == nil || c.from != from || c.to != to {
		if !CanResample(from, to) {
			return dst, false
		}
		c.r, c.from, c.to = NewResampler(from, to), from, to
	}
	return c.r.Process(dst, src), true
}
