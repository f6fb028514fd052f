package audio

import (
	"io"
	"math"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// defaultToneAmplitude is the peak per component when Tone.Amplitude is 0:
// about -12 dBFS, comfortably loud without clipping a two-tone sum.
const defaultToneAmplitude = 8000

// Tone describes a generated tone: a sum of sines, optionally cadenced.
// Ringback in North America, for example, is
// Tone{Freqs: []float64{440, 480}, On: 2 * time.Second, Off: 4 * time.Second}.
type Tone struct {
	// Freqs are the component frequencies in Hz; none gives silence.
	Freqs []float64
	// Amplitude is the peak amplitude of each component; 0 means 8000.
	// Sums beyond the 16-bit range are clipped.
	Amplitude int16
	// Duration is how long the tone plays before ReadFrame returns io.EOF,
	// counted in whole frames (rounded up; the last frame is completed with
	// silence); 0 or less plays forever.
	Duration time.Duration
	// On and Off are the cadence: On of tone, then Off of silence,
	// repeated. A zero (or negative) On means a continuous tone.
	On, Off time.Duration
}

// ToneSource is the Source that plays a Tone; make one with NewTone.
// The sines are phase-continuous across frames, across cadence gaps and
// across changes of the frame rate. A ToneSource is not safe for
// concurrent use.
type ToneSource struct {
	tone    Tone
	amp     float64
	phase   []float64     // per component, in cycles, kept in [0, 1)
	elapsed time.Duration // stream time of the next frame
}

// NewTone returns a Source that plays t, starting at time zero.
func NewTone(t Tone) *ToneSource {
	t.Freqs = append([]float64(nil), t.Freqs...)
	amp := float64(t.Amplitude)
	if amp == 0 {
		amp = defaultToneAmplitude
	}
	return &ToneSource{tone: t, amp: amp, phase: make([]float64, len(t.Freqs))}
}

// ReadFrame fills f with the next 20 ms of the tone at f.Rate, or returns
// io.EOF once the tone's Duration has been played.
func (s *ToneSource) ReadFrame(f *media.Frame) error {
	d := s.tone.Duration
	if d > 0 && s.elapsed >= d {
		return io.EOF
	}
	out, err := f.Fit()
	if err != nil {
		return err
	}
	n := len(out)
	on, period := s.tone.On, s.tone.On+max(s.tone.Off, 0)
	for i := range out {
		t := s.elapsed + time.Duration(int64(i)*int64(media.FrameDuration)/int64(n))
		audible := (d <= 0 || t < d) && (on <= 0 || t%period < on)
		v := 0.0
		for k, fr := range s.tone.Freqs {
			if audible {
				v += sinCycles(s.phase[k])
			}
			p := s.phase[k] + fr/float64(f.Rate)
			if p >= 1 {
				p -= math.Floor(p)
			}
			s.phase[k] = p
		}
		out[i] = dsp.Clip16(v * s.amp)
	}
	s.elapsed += media.FrameDuration
	return nil
}

// Rewind starts the tone over from time zero (and phase zero).
func (s *ToneSource) Rewind() {
	s.elapsed = 0
	clear(s.phase)
}

// sineTable holds one period of a sine in sineTableSize steps (plus a guard
// entry) for sinCycles.
const sineTableSize = 4096

var sineTable = func() (t [sineTableSize + 1]float64) {
	for i := range t {
		t[i] = math.Sin(2 * math.Pi * float64(i) / sineTableSize)
	}
	return t
}()

// sinCycles returns sin(2πp) for p in [0, 1) by linear interpolation in
// sineTable: the error (< 3e-7 of full scale) is far below 16-bit
// resolution, and it costs a fraction of math.Sin, which dominated tone
// generation under load (see docs/BENCHMARKS.md).
func sinCycles(p float64) float64 {
	x := p * sineTableSize
	i := int(x)
	frac := x - float64(i)
	return sineTable[i] + frac*(sineTable[i+1]-sineTable[i])
}

// DTMFTone returns a Source that plays digit as in-band DTMF for on, then
// silence for off (for test peers and for sending DTMF to peers without
// RFC 4733).
func DTMFTone(digit rune, on, off time.Duration) (media.Source, bool) {
	row, col, ok := dsp.DTMFFrequencies(digit)
	if !ok {
		return nil, false
	}
	return media.Sequence(
		NewTone(Tone{Freqs: []float64{row, col}, Amplitude: 7000, Duration: on}),
		media.Silence(off),
	), true
}
