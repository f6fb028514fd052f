package media

import (
	"sync"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// Pipe is a Sink and a Source at once: frames written to it are read back
// in order after a short delay. The echo test wires one between a leg's
// inbound and outbound audio; a transcoding bridge wires one each way
// between two legs. When it runs dry it yields silence rather than ending,
// so a late or lossy peer does not stop the audio. Frames are kept at the
// writer's rate and converted to the reader's when the two differ (a 16 kHz
// G.722 leg bridged to an 8 kHz G.711 one); rates that are not integer
// multiples of each other read as silence.
type Pipe struct {
	mu     sync.Mutex
	conv   dsp.RateConverter
	rate   int
	ring   [][]int16
	r, n   int
	primed bool
	delay  int
}

// NewPipe returns a pipe that holds up to 50 frames (1 s) and starts
// yielding them once delayFrames frames are buffered.
func NewPipe(delayFrames int) *Pipe {
	if delayFrames < 1 {
		delayFrames = 1
	}
	return &Pipe{ring: make([][]int16, 50), delay: delayFrames}
}

// WriteFrame queues a copy of f; the oldest frame is dropped when full.
func (e *Pipe) WriteFrame(f *Frame) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rate != f.Rate {
		e.rate, e.r, e.n, e.primed = f.Rate, 0, 0, false
	}
	if e.n == len(e.ring) {
		e.r = (e.r + 1) % len(e.ring)
		e.n--
	}
	w := (e.r + e.n) % len(e.ring)
	e.ring[w] = append(e.ring[w][:0], f.Samples...)
	e.n++
	return nil
}

// ReadFrame yields the oldest queued frame, or silence.
func (e *Pipe) ReadFrame(f *Frame) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.primed && e.n >= e.delay {
		e.primed = true
	}
	if !e.primed || e.n == 0 {
		e.primed = e.n > 0 && e.primed
		clear(f.Samples)
		return nil
	}
	if e.rate == f.Rate {
		copy(f.Samples, e.ring[e.r])
	} else if out, ok := e.conv.Convert(f.Samples[:0], e.ring[e.r], e.rate, f.Rate); !ok || len(out) != len(f.Samples) {
		clear(f.Samples)
	}
	e.r = (e.r + 1) % len(e.ring)
	e.n--
	return nil
}
