package media

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// frameDuration is FrameDurationMs as a time.Duration.
const frameDuration = FrameDurationMs * time.Millisecond

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
func (s *ToneSource) ReadFrame(f *Frame) error {
	d := s.tone.Duration
	if d > 0 && s.elapsed >= d {
		return io.EOF
	}
	out, err := frameSamples(f)
	if err != nil {
		return err
	}
	n := len(out)
	on, period := s.tone.On, s.tone.On+max(s.tone.Off, 0)
	for i := range out {
		t := s.elapsed + time.Duration(int64(i)*int64(frameDuration)/int64(n))
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
	s.elapsed += frameDuration
	return nil
}

// Rewind starts the tone over from time zero (and phase zero).
func (s *ToneSource) Rewind() {
	s.elapsed = 0
	clear(s.phase)
}

// frameSamples sizes f.Samples to a 20 ms frame at f.Rate, reusing its
// backing array when it is large enough, and returns it.
func frameSamples(f *Frame) ([]int16, error) {
	n := SamplesPerFrame(f.Rate)
	if f.Rate <= 0 || n <= 0 {
		return nil, fmt.Errorf("media: invalid frame rate %d Hz", f.Rate)
	}
	if cap(f.Samples) >= n {
		f.Samples = f.Samples[:n]
	} else {
		f.Samples = make([]int16, n)
	}
	return f.Samples, nil
}

// silenceSource is the Source returned by Silence.
type silenceSource struct {
	d, elapsed time.Duration
}

// Silence returns a Source of digital silence lasting d (rounded up to
// whole 20 ms frames), or forever when d is 0 or less. The returned
// source also has a Rewind method, so it can be looped.
func Silence(d time.Duration) Source { return &silenceSource{d: d} }

func (s *silenceSource) ReadFrame(f *Frame) error {
	if s.d > 0 && s.elapsed >= s.d {
		return io.EOF
	}
	out, err := frameSamples(f)
	if err != nil {
		return err
	}
	clear(out)
	s.elapsed += frameDuration
	return nil
}

func (s *silenceSource) Rewind() { s.elapsed = 0 }

// sequenceSource is the Source returned by Sequence.
type sequenceSource struct {
	srcs []Source
	i    int
}

// Sequence returns a Source that plays each of srcs to its end (io.EOF) in
// turn, without a gap: the frame after the last one of a source is the first
// one of the next. Any other error from a source is passed on, and reading
// again retries that source. The returned source also has a Rewind method
// (use a type assertion to reach it, e.g. to Loop a sequence) that starts
// over from the first source, rewinding every source that has a Rewind
// method itself.
func Sequence(srcs ...Source) Source {
	return &sequenceSource{srcs: append([]Source(nil), srcs...)}
}

func (s *sequenceSource) ReadFrame(f *Frame) error {
	for s.i < len(s.srcs) {
		err := s.srcs[s.i].ReadFrame(f)
		if err == nil {
			return nil
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		s.i++
	}
	return io.EOF
}

func (s *sequenceSource) Rewind() {
	for _, src := range s.srcs {
		if r, ok := src.(interface{ Rewind() }); ok {
			r.Rewind()
		}
	}
	s.i = 0
}

// loopSource is the Source returned by Loop.
type loopSource struct {
	src interface {
		Source
		Rewind()
	}
	times  int
	played int  // complete plays so far
	fresh  bool // nothing read since the start or the last rewind
}

// Loop returns a Source that plays src times times over, rewinding it at
// each end without a gap; times 0 (or less) loops forever. A src that
// yields nothing at all ends the loop at once instead of spinning. The
// returned source also has a Rewind method that starts the count over.
func Loop(src interface {
	Source
	Rewind()
}, times int) Source {
	return &loopSource{src: src, times: times, fresh: true}
}

func (l *loopSource) ReadFrame(f *Frame) error {
	for l.times <= 0 || l.played < l.times {
		err := l.src.ReadFrame(f)
		if err == nil {
			l.fresh = false
			return nil
		}
		if !errors.Is(err, io.EOF) {
			return err
		}
		if l.fresh {
			// Empty even right after a rewind: looping would never end.
			l.played = max(l.times, 1)
			return io.EOF
		}
		l.played++
		if l.times > 0 && l.played >= l.times {
			break
		}
		l.src.Rewind()
		l.fresh = true
	}
	return io.EOF
}

func (l *loopSource) Rewind() {
	l.src.Rewind()
	l.played, l.fresh = 0, true
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
