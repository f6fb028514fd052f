package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// ErrInvalidWAV is wrapped by the errors NewWAVSource and OpenWAV return for
// input that is not a well-formed RIFF/WAVE file.
var ErrInvalidWAV = errors.New("audio: invalid WAV file")

// ErrUnsupportedWAV is wrapped by the errors NewWAVSource and OpenWAV return
// for well-formed WAV files in a format they do not play (an encoding other
// than 16-bit PCM, A-law or µ-law, more than two channels, or a sample rate
// other than 8000, 16000 or 48000 Hz).
var ErrUnsupportedWAV = errors.New("audio: unsupported WAV file")

// WAV format tags.
const (
	wavFormatPCM        = 1
	wavFormatALaw       = 6
	wavFormatMuLaw      = 7
	wavFormatExtensible = 0xFFFE
)

// wavSubFormatTail is bytes 2..15 of the KSDATAFORMAT_SUBTYPE GUIDs of
// WAVE_FORMAT_EXTENSIBLE; bytes 0..1 hold the plain format tag.
var wavSubFormatTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// WAVSource plays a WAV file decoded into memory as a Source. The file's
// audio is converted to mono 16-bit PCM at its own sample rate once, when it
// is opened; ReadFrame resamples it to whatever rate the frame asks for.
//
// Clone hands out further players over the same decoded samples, each with
// its own position, so one cached prompt can play on many calls at once. A
// single WAVSource (or clone) is not safe for concurrent use.
type WAVSource struct {
	samples []int16 // decoded mono audio; shared with clones, never written
	rate    int

	pos     int // index in samples of the next sample to play
	rs      *dsp.Resampler
	rsRate  int     // output rate rs was made for
	in, out []int16 // scratch for resampling
}

// OpenWAV reads and decodes the WAV file at path. See NewWAVSource.
func OpenWAV(path string) (*WAVSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	w, err := parseWAV(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return w, nil
}

// NewWAVSource reads a whole WAV file from r and decodes it into memory
// (prompt files are small).
//
// It accepts RIFF/WAVE files whose fmt chunk says 16-bit PCM (format 1),
// A-law (6), µ-law (7), or WAVE_FORMAT_EXTENSIBLE (0xFFFE) wrapping one of
// those; at 8000, 16000 or 48000 Hz; mono or stereo, stereo being mixed
// down to mono by averaging the channels. Chunks other than fmt and data
// (LIST, fact, cue, …) are skipped, odd-sized chunks are accepted with or
// without their padding byte, and a data chunk whose size is 0 or
// 0xFFFFFFFF (as left by streaming writers) or larger than what remains
// extends to the end of the file. Malformed or unsupported input yields an
// error wrapping ErrInvalidWAV or ErrUnsupportedWAV.
func NewWAVSource(r io.Reader) (*WAVSource, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return parseWAV(data)
}

// wavFormat is what the fmt chunk says, reduced to what decoding needs.
type wavFormat struct {
	tag      int // wavFormatPCM, wavFormatALaw or wavFormatMuLaw
	channels int
	rate     int
}

func parseWAV(data []byte) (*WAVSource, error) {
	if len(data) < 12 || string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: no RIFF/WAVE header", ErrInvalidWAV)
	}
	var (
		format          *wavFormat
		audio           []byte
		haveAudio       bool
		end             = len(data)
		p               = 12
		le32            = binary.LittleEndian.Uint32
		remaining       = func(at int) uint64 { return uint64(end - at) }
		sawDataToTheEnd bool
	)
	for p+8 <= end && !sawDataToTheEnd {
		id, size, body := string(data[p:p+4]), le32(data[p+4:p+8]), p+8
		switch id {
		case "fmt ":
			if uint64(size) > remaining(body) {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes truncated", ErrInvalidWAV, size)
			}
			f, err := parseWAVFormat(data[body : body+int(size)])
			if err != nil {
				return nil, err
			}
			format = f
		case "data":
			if size == 0 || size == math.MaxUint32 || uint64(size) > remaining(body) {
				size = uint32(end - body)
				sawDataToTheEnd = true
			}
			if !haveAudio {
				audio, haveAudio = data[body:body+int(size)], true
			}
		default:
			if uint64(size) > remaining(body) {
				if format != nil && haveAudio {
					// Trailing junk after everything we need: ignore it.
					sawDataToTheEnd = true
					continue
				}
				return nil, fmt.Errorf("%w: %q chunk of %d bytes truncated", ErrInvalidWAV, id, size)
			}
		}
		p = body + int(size)
		if size%2 == 1 && p < end {
			// RIFF pads odd chunks to an even size, but some writers leave
			// the pad byte out: skip it unless the next chunk starts here.
			if plausibleChunk(data[p+1:end]) || !plausibleChunk(data[p:end]) {
				p++
			}
		}
	}
	if format == nil {
		return nil, fmt.Errorf("%w: no fmt chunk", ErrInvalidWAV)
	}
	if !haveAudio {
		return nil, fmt.Errorf("%w: no data chunk", ErrInvalidWAV)
	}
	return &WAVSource{samples: decodeWAVAudio(format, audio), rate: format.rate}, nil
}

// plausibleChunk reports whether b starts with what looks like a chunk
// header: four printable ASCII bytes and a size that fits in b (any size
// for a data chunk, which may run to the end of the file).
func plausibleChunk(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	for _, c := range b[:4] {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return string(b[:4]) == "data" || uint64(binary.LittleEndian.Uint32(b[4:8])) <= uint64(len(b)-8)
}

func parseWAVFormat(b []byte) (*wavFormat, error) {
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: fmt chunk of %d bytes, want at least 16", ErrInvalidWAV, len(b))
	}
	le16 := func(i int) int { return int(binary.LittleEndian.Uint16(b[i:])) }
	tag, channels, bits := le16(0), le16(2), le16(14)
	rate := binary.LittleEndian.Uint32(b[4:])
	if tag == wavFormatExtensible {
		if len(b) < 40 || le16(16) < 22 {
			return nil, fmt.Errorf("%w: WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes, want 40", ErrInvalidWAV, len(b))
		}
		if !bytes.Equal(b[26:40], wavSubFormatTail) {
			return nil, fmt.Errorf("%w: unknown WAVE_FORMAT_EXTENSIBLE sub-format", ErrUnsupportedWAV)
		}
		tag = le16(24)
	}
	switch tag {
	case wavFormatPCM:
		if bits != 16 {
			return nil, fmt.Errorf("%w: %d-bit PCM, want 16-bit", ErrUnsupportedWAV, bits)
		}
	case wavFormatALaw, wavFormatMuLaw:
		if bits != 8 {
			return nil, fmt.Errorf("%w: %d-bit G.711, want 8-bit", ErrUnsupportedWAV, bits)
		}
	default:
		return nil, fmt.Errorf("%w: encoding (format tag %#x), want PCM, A-law or µ-law", ErrUnsupportedWAV, tag)
	}
	if channels != 1 && channels != 2 {
		return nil, fmt.Errorf("%w: %d channels, want mono or stereo", ErrUnsupportedWAV, channels)
	}
	switch rate {
	case 8000, 16000, 48000:
	default:
		return nil, fmt.Errorf("%w: sample rate %d Hz, want 8000, 16000 or 48000 Hz", ErrUnsupportedWAV, rate)
	}
	return &wavFormat{tag: tag, channels: channels, rate: int(rate)}, nil
}

// decodeWAVAudio converts the data chunk to mono 16-bit samples; a trailing
// partial sample frame is dropped.
func decodeWAVAudio(f *wavFormat, audio []byte) []int16 {
	width := 1
	if f.tag == wavFormatPCM {
		width = 2
	}
	decode := func(b []byte) int32 {
		switch f.tag {
		case wavFormatALaw:
			return int32(codec.AlawDecode(b[0]))
		case wavFormatMuLaw:
			return int32(codec.MulawDecode(b[0]))
		}
		return int32(int16(binary.LittleEndian.Uint16(b)))
	}
	step := width * f.channels
	out := make([]int16, len(audio)/step)
	for i := range out {
		b := audio[i*step:]
		if f.channels == 1 {
			out[i] = int16(decode(b))
		} else {
			out[i] = int16((decode(b) + decode(b[width:])) >> 1)
		}
	}
	return out
}

// Rate returns the file's own sample rate in Hz.
func (w *WAVSource) Rate() int { return w.rate }

// Duration returns the playing time of the file.
func (w *WAVSource) Duration() time.Duration {
	return time.Duration(len(w.samples)) * time.Second / time.Duration(w.rate)
}

// Rewind starts playback over from the beginning, so a prompt can be
// replayed.
func (w *WAVSource) Rewind() {
	w.pos = 0
	w.rs = nil
}

// Clone returns another player over the same decoded samples, positioned at
// the start and independent of w (which it does not read or change after
// Clone returns), so it may be used on another goroutine.
func (w *WAVSource) Clone() *WAVSource {
	return &WAVSource{samples: w.samples, rate: w.rate}
}

// ReadFrame fills f with the next 20 ms of audio at f.Rate, resampled when
// that differs from the file's rate (f.Rate must then be an integer multiple
// or fraction of it, see CanResample). The last frame is completed with
// silence; after it ReadFrame returns io.EOF.
func (w *WAVSource) ReadFrame(f *media.Frame) error {
	if w.pos >= len(w.samples) {
		return io.EOF
	}
	out, err := f.Fit()
	if err != nil {
		return err
	}
	nIn := media.SamplesPerFrame(w.rate)
	if f.Rate == w.rate {
		n := copy(out, w.samples[w.pos:])
		clear(out[n:])
		w.pos += nIn
		return nil
	}
	if !dsp.CanResample(w.rate, f.Rate) {
		return fmt.Errorf("audio: cannot play a %d Hz WAV file at %d Hz", w.rate, f.Rate)
	}
	if w.rs == nil || w.rsRate != f.Rate {
		// Warm the filter up on the audio around the current position
		// (silence outside the file) so the output is aligned with it and
		// continuous: its memory spans 2·Delay inputs, and the output lags
		// by Delay.
		w.rs, w.rsRate = dsp.NewResampler(w.rate, f.Rate), f.Rate
		d := w.rs.Delay()
		w.out = w.rs.Process(w.out[:0], w.window(w.pos-2*d, w.pos+d))
	}
	d := w.rs.Delay()
	w.out = w.rs.Process(w.out[:0], w.window(w.pos+d, w.pos+d+nIn))
	n := copy(out, w.out)
	clear(out[n:])
	w.pos += nIn
	return nil
}

// window returns samples[lo:hi] in the scratch buffer, with zeros for
// positions outside the file.
func (w *WAVSource) window(lo, hi int) []int16 {
	if cap(w.in) < hi-lo {
		w.in = make([]int16, hi-lo)
	}
	buf := w.in[:hi-lo]
	clear(buf)
	a, b := max(lo, 0), min(hi, len(w.samples))
	if a < b {
		copy(buf[a-lo:], w.samples[a:b])
	}
	return buf
}

// WriteWAV writes samples as a 16-bit PCM mono WAV file at rate Hz.
func WriteWAV(w io.Writer, rate int, samples []int16) error {
	if rate <= 0 || rate > math.MaxInt32/2 {
		return fmt.Errorf("audio: WriteWAV: invalid sample rate %d Hz", rate)
	}
	n := uint64(len(samples)) * 2
	if n > math.MaxUint32-36 {
		return fmt.Errorf("audio: WriteWAV: %d samples do not fit in a WAV file", len(samples))
	}
	buf := appendWAVHeader(make([]byte, 0, 44+n), rate, 1, uint32(n))
	for _, s := range samples {
		buf = binary.LittleEndian.AppendUint16(buf, uint16(s))
	}
	_, err := w.Write(buf)
	return err
}

// appendWAVHeader appends the 44-byte header of a 16-bit PCM WAV file with
// dataBytes of samples.
func appendWAVHeader(buf []byte, rate, channels int, dataBytes uint32) []byte {
	buf = append(buf, "RIFF"...)
	buf = binary.LittleEndian.AppendUint32(buf, 36+dataBytes)
	buf = append(buf, "WAVEfmt "...)
	buf = binary.LittleEndian.AppendUint32(buf, 16)
	buf = binary.LittleEndian.AppendUint16(buf, wavFormatPCM)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(channels))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(rate))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(rate*2*channels)) // bytes per second
	buf = binary.LittleEndian.AppendUint16(buf, uint16(2*channels))      // block align
	buf = binary.LittleEndian.AppendUint16(buf, 16)                      // bits per sample
	buf = append(buf, "data"...)
	return binary.LittleEndian.AppendUint32(buf, dataBytes)
}
