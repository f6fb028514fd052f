package media

import (
	"io"
	"math"
	"time"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// sineSource is the internal tests' tone: the audio package's generators
// build on media, so media's own tests make their test signals here.
type sineSource struct {
	freqs   []float64
	amp     float64 // peak per component
	d       time.Duration
	elapsed time.Duration
	phase   []float64 // cycles
}

// sine returns a Source of a freq Hz sine of peak amp (0: 8000) for d
// (0: forever).
func sine(freq float64, d time.Duration, amp float64) *sineSource {
	if amp == 0 {
		amp = 8000
	}
	return &sineSource{freqs: []float64{freq}, amp: amp, d: d, phase: make([]float64, 1)}
}

func (s *sineSource) ReadFrame(f *Frame) error {
	if s.d > 0 && s.elapsed >= s.d {
		return io.EOF
	}
	out, err := f.Fit()
	if err != nil {
		return err
	}
	for i := range out {
		var v float64
		for k, fr := range s.freqs {
			v += s.amp * math.Sin(2*math.Pi*s.phase[k])
			s.phase[k] += fr / float64(f.Rate)
			s.phase[k] -= math.Floor(s.phase[k])
		}
		out[i] = int16(math.Round(v))
	}
	s.elapsed += FrameDuration
	return nil
}

// Rewind starts the tone over.
func (s *sineSource) Rewind() {
	s.elapsed = 0
	clear(s.phase)
}

// dtmfTone plays digit as in-band DTMF for on, then silence for off.
func dtmfTone(digit rune, on, off time.Duration) (Source, bool) {
	row, col, ok := dsp.DTMFFrequencies(digit)
	if !ok {
		return nil, false
	}
	return Sequence(&sineSource{freqs: []float64{row, col}, amp: 7000, d: on, phase: make([]float64, 2)}, Silence(off)), true
}
