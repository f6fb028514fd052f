package media

import (
	"errors"
	"io"
	"time"
)

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
	out, err := f.Fit()
	if err != nil {
		return err
	}
	clear(out)
	s.elapsed += FrameDuration
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
