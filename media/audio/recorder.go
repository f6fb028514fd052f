package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// WAVRecorder is a Sink that writes 16-bit mono PCM to a WAV file whose
// header stays valid while it records: every frame goes straight to the
// file (no user-space buffer to lose), and the RIFF and data sizes are
// rewritten every HeaderEvery frames, so a process killed mid-call leaves a
// file that players read up to the last header update (200 ms by default).
//
// Cost on the media path: one write(2) per 20 ms frame and two pwrite(2)
// per header update; no allocation per frame.
type WAVRecorder struct {
	// HeaderEvery is how many frames pass between header updates (10).
	HeaderEvery int

	mu       sync.Mutex
	f        *os.File
	rate     int
	channels int
	data     uint32 // bytes of samples written
	frames   int
	buf      []byte
	conv     dsp.RateConverter
	conved   []int16
	closed   bool
	lastErr  error
}

// ErrRecorderFull is returned once a recording reaches the 4 GiB WAV limit.
var ErrRecorderFull = errors.New("audio: WAV recording reached its size limit")

// NewWAVRecorder creates (truncating) path and writes a header for rate Hz
// mono.
func NewWAVRecorder(path string, rate int) (*WAVRecorder, error) {
	return newWAVRecorder(path, rate, 1)
}

func newWAVRecorder(path string, rate, channels int) (*WAVRecorder, error) {
	if rate <= 0 || rate > media.MaxFrameSamples*50 {
		return nil, fmt.Errorf("audio: recorder: invalid rate %d", rate)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("audio: recorder: %w", err)
	}
	if _, err := f.Write(appendWAVHeader(nil, rate, channels, 0)); err != nil {
		f.Close()
		return nil, fmt.Errorf("audio: recorder: %w", err)
	}
	return &WAVRecorder{HeaderEvery: 10, f: f, rate: rate, channels: channels, buf: make([]byte, 0, media.MaxFrameSamples*2*channels)}, nil
}

// WriteFrame appends f. Frames at another rate than the recording's are
// converted (a 16 kHz leg recorded to an 8 kHz file); rates that are not
// integer multiples of it are refused.
func (r *WAVRecorder) WriteFrame(f *media.Frame) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return media.ErrClosed
	}
	samples := f.Samples
	if f.Rate != r.rate {
		out, ok := r.conv.Convert(r.conved[:0], f.Samples, f.Rate, r.rate)
		if !ok {
			return fmt.Errorf("audio: recorder at %d Hz got a %d Hz frame", r.rate, f.Rate)
		}
		r.conved, samples = out, out
	}
	if r.channels != 1 {
		return fmt.Errorf("audio: recorder: WriteFrame on a %d-channel recording", r.channels)
	}
	return r.write(samples)
}

// write appends interleaved samples. Called with r.mu held.
func (r *WAVRecorder) write(samples []int16) error {
	if uint64(r.data)+uint64(len(samples))*2 > math.MaxUint32-36 {
		return ErrRecorderFull
	}
	b := r.buf[:0]
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	if _, err := r.f.Write(b); err != nil {
		r.lastErr = err
		return fmt.Errorf("audio: recorder: %w", err)
	}
	r.data += uint32(len(b))
	r.frames++
	if r.HeaderEvery <= 1 || r.frames%r.HeaderEvery == 0 {
		r.updateHeader()
	}
	return nil
}

func (r *WAVRecorder) updateHeader() {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], 36+r.data)
	if _, err := r.f.WriteAt(b[:], 4); err != nil {
		r.lastErr = err
	}
	binary.LittleEndian.PutUint32(b[:], r.data)
	if _, err := r.f.WriteAt(b[:], 40); err != nil {
		r.lastErr = err
	}
}

// Bytes returns how many bytes of samples are recorded.
func (r *WAVRecorder) Bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return int(r.data)
}

// Close writes the final header and closes the file. Safe to call twice.
func (r *WAVRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.updateHeader()
	err := r.f.Close()
	if r.lastErr != nil {
		return fmt.Errorf("audio: recorder: %w", r.lastErr)
	}
	return err
}

// Duration returns how much audio is recorded.
func (r *WAVRecorder) Duration() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Duration(r.data/uint32(2*r.channels)) * time.Second / time.Duration(r.rate)
}
