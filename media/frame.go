// Package media is Switchboard's RTP media engine: streams (Endpoint) on
// packet transports (package media/transport), the jitter buffer, bridges
// and mixers, DTMF, statistics, and the paths that move audio between legs
// without passing through an actor. Codecs live in media/codec, signal
// processing in media/dsp, and tones, WAV files, speech and recorders in
// media/audio.
//
// Audio moves in 20 ms frames of signed 16-bit linear PCM. A Source yields
// frames, a Sink consumes them; players, recorders, detectors and mixers
// compose through those two interfaces.
package media

import (
	"errors"
	"fmt"
	"time"
)

// FrameDurationMs is the packetisation interval used everywhere in the
// engine, in milliseconds.
const FrameDurationMs = 20

// FrameDuration is FrameDurationMs as a time.Duration.
const FrameDuration = FrameDurationMs * time.Millisecond

// MaxFrameSamples is the largest frame the engine handles: 20 ms at 48 kHz.
const MaxFrameSamples = 48000 * FrameDurationMs / 1000

// Frame is 20 ms of mono 16-bit PCM at Rate samples per second. Samples
// always holds Rate/50 values; the backing array is owned by whoever
// allocated the frame and reused between calls, so consumers must copy what
// they keep.
type Frame struct {
	Rate    int
	Samples []int16
}

// NewFrame returns a frame for the given sample rate with its sample buffer
// allocated once (the only allocation a frame ever makes).
func NewFrame(rate int) *Frame {
	return &Frame{Rate: rate, Samples: make([]int16, rate*FrameDurationMs/1000)}
}

// SamplesPerFrame returns how many samples a 20 ms frame holds at rate.
func SamplesPerFrame(rate int) int { return rate * FrameDurationMs / 1000 }

// Source yields consecutive 20 ms frames. ReadFrame fills f (whose Rate the
// caller has set) and returns io.EOF when the source is exhausted. A source
// whose native rate differs from f.Rate resamples.
type Source interface {
	ReadFrame(f *Frame) error
}

// Sink consumes 20 ms frames. WriteFrame must not keep f after it returns.
type Sink interface {
	WriteFrame(f *Frame) error
}

// SourceFunc adapts a function to the Source interface.
type SourceFunc func(f *Frame) error

// ReadFrame calls fn(f).
func (fn SourceFunc) ReadFrame(f *Frame) error { return fn(f) }

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(f *Frame) error

// WriteFrame calls fn(f).
func (fn SinkFunc) WriteFrame(f *Frame) error { return fn(f) }

// ErrClosed is returned by operations on a closed endpoint or source.
var ErrClosed = errors.New("media: closed")

// Fit sizes f.Samples to a 20 ms frame at f.Rate, reusing its backing
// array when it is large enough, and returns it (what a Source does
// before filling the frame). No allocation once the array is big enough.
func (f *Frame) Fit() ([]int16, error) {
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
