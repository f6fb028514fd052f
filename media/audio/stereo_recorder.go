package audio

import (
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/media"
)

// StereoRecorder records two streams side by side into one 2-channel WAV
// file — for a call, the caller on the left and what the caller hears
// (the other party, prompts) on the right. Left and Right are Sinks fed
// from any goroutine; the recorder's own 20 ms clock takes one frame from
// each per tick, silence for a side that has none, interleaves them and
// writes them, so the channels stay aligned on a common timeline whatever
// arrives when and even if one side stops altogether. Each side queues at
// most stereoDepth frames (early frames beyond that drop the oldest), which
// bounds how far the channels can drift apart (80 ms).
//
// The file has the WAVRecorder's crash safety: every tick is written
// straight to the file and the header is rewritten every 10 ticks.
//
// Cost: one goroutine per recording; per 20 ms one write(2) of 4·rate/50
// bytes; no allocation.
type StereoRecorder struct {
	rec         *WAVRecorder
	left, right *stereoSide
	out         []int16 // interleaved frame
	zero        []int16
	done        chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error
	mu          sync.Mutex // serialises tick and Close
	closed      bool
	start       time.Time // of the clock
	written     int64     // ticks written by the clock
}

// stereoDepth is how many frames a side may queue.
const stereoDepth = 4

// stereoSide is one channel's input: a fixed ring of frames.
type stereoSide struct {
	mu      sync.Mutex
	rate    int
	slots   [stereoDepth][]int16
	head, n int
	dropped uint64 // frames of the wrong rate or pushed out by newer ones
}

// NewStereoRecorder creates (truncating) path as a 2-channel 16-bit WAV
// at rate Hz and starts its clock.
func NewStereoRecorder(path string, rate int) (*StereoRecorder, error) {
	r, err := newStereoRecorder(path, rate)
	if err != nil {
		return nil, err
	}
	r.start = time.Now()
	r.wg.Add(1)
	go r.run()
	return r, nil
}

// newStereoRecorder makes a recorder without a clock (tests call tick).
func newStereoRecorder(path string, rate int) (*StereoRecorder, error) {
	rec, err := newWAVRecorder(path, rate, 2)
	if err != nil {
		return nil, err
	}
	n := media.SamplesPerFrame(rate)
	mk := func() *stereoSide {
		s := &stereoSide{rate: rate}
		for i := range s.slots {
			s.slots[i] = make([]int16, n)
		}
		return s
	}
	return &StereoRecorder{rec: rec, left: mk(), right: mk(), out: make([]int16, 2*n), zero: make([]int16, n),
		done: make(chan struct{})}, nil
}

// Left is the Sink of the left channel.
func (r *StereoRecorder) Left() media.Sink { return r.left }

// Right is the Sink of the right channel.
func (r *StereoRecorder) Right() media.Sink { return r.right }

// WriteFrame queues a copy of f; frames of another rate are dropped.
func (s *stereoSide) WriteFrame(f *media.Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Rate != s.rate || len(f.Samples) != len(s.slots[0]) {
		s.dropped++
		return nil
	}
	if s.n == stereoDepth {
		s.head = (s.head + 1) % stereoDepth
		s.n--
		s.dropped++
	}
	copy(s.slots[(s.head+s.n)%stereoDepth], f.Samples)
	s.n++
	return nil
}

// take copies the oldest queued frame into the channel's places in out
// (every second sample from off), or silence; it reports whether it had
// one.
func (s *stereoSide) take(out []int16, off int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		for i := off; i < len(out); i += 2 {
			out[i] = 0
		}
		return false
	}
	src := s.slots[s.head]
	for i, v := range src {
		out[2*i+off] = v
	}
	s.head = (s.head + 1) % stereoDepth
	s.n--
	return true
}

func (s *stereoSide) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// run is the recording's clock. A late wake-up (a loaded machine, a
// ticker that dropped ticks) writes every frame that is due, so the file
// keeps the length of the wall-clock time it covers.
func (r *StereoRecorder) run() {
	defer r.wg.Done()
	t := time.NewTicker(media.FrameDuration)
	defer t.Stop()
	for {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			if r.catchUp(now) != nil {
				return // disk full or the like: the file keeps what it has
			}
		}
	}
}

// catchUp writes the ticks due by now, at most a second's worth at once.
func (r *StereoRecorder) catchUp(now time.Time) error {
	due := int64(now.Sub(r.start) / media.FrameDuration)
	for n := 0; r.written < due && n < 50; n++ {
		if err := r.tick(); err != nil {
			return err
		}
		r.written++
	}
	return nil
}

// tick writes one stereo frame.
func (r *StereoRecorder) tick() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return media.ErrClosed
	}
	r.left.take(r.out, 0)
	r.right.take(r.out, 1)
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	return r.rec.write(r.out)
}

// Duration returns how much is recorded.
func (r *StereoRecorder) Duration() time.Duration { return r.rec.Duration() }

// Close stops the clock, writes what the sides still queue, and closes the
// file with its final header. Safe to call twice.
func (r *StereoRecorder) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		r.wg.Wait()
		if !r.start.IsZero() {
			_ = r.catchUp(time.Now()) // a clock that ran late
		}
		for range stereoDepth {
			if r.left.queued() == 0 && r.right.queued() == 0 {
				break
			}
			_ = r.tick()
		}
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.closeErr = r.rec.Close()
	})
	return r.closeErr
}
