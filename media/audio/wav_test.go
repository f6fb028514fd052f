package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

// wavChunk returns a RIFF chunk; pad adds the pad byte after an odd body.
func wavChunk(id string, body []byte, pad bool) []byte {
	b := append([]byte(id), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...)
	b = append(b, body...)
	if pad && len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// wavFmt returns a fmt chunk body; extra is appended (cbSize and beyond).
func wavFmt(tag, channels, rate, bits int, extra ...byte) []byte {
	block := channels * bits / 8
	b := binary.LittleEndian.AppendUint16(nil, uint16(tag))
	b = binary.LittleEndian.AppendUint16(b, uint16(channels))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate))
	b = binary.LittleEndian.AppendUint32(b, uint32(rate*block))
	b = binary.LittleEndian.AppendUint16(b, uint16(block))
	b = binary.LittleEndian.AppendUint16(b, uint16(bits))
	return append(b, extra...)
}

// wavFmtExtensible returns a WAVE_FORMAT_EXTENSIBLE fmt body for sub-format sub.
func wavFmtExtensible(sub, channels, rate, bits int) []byte {
	ext := binary.LittleEndian.AppendUint16(nil, 22)          // cbSize
	ext = binary.LittleEndian.AppendUint16(ext, uint16(bits)) // valid bits
	ext = binary.LittleEndian.AppendUint32(ext, 0)            // channel mask
	ext = binary.LittleEndian.AppendUint16(ext, uint16(sub))  // GUID data1 (low half)
	ext = append(ext, wavSubFormatTail...)                    // rest of the GUID
	return wavFmt(wavFormatExtensible, channels, rate, bits, ext...)
}

// riff wraps chunks in a RIFF/WAVE header with a correct size.
func riff(chunks ...[]byte) []byte {
	body := slices.Concat(append([][]byte{[]byte("WAVE")}, chunks...)...)
	return slices.Concat([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body))), body)
}

func pcmBytes(s []int16) []byte {
	var b []byte
	for _, v := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return b
}

// allSamples reads w to the end at rate.
func allSamples(t *testing.T, w media.Source, rate int) ([]int16, int) {
	t.Helper()
	return mediatest.ReadFrames(t, w, rate, 100000)
}

func mustWAV(t *testing.T, data []byte) *WAVSource {
	t.Helper()
	w, err := NewWAVSource(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWriteWAVReadBack(t *testing.T) {
	in := dsp.Sine(8000, 1000, 10000, 8000, 0)
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 8000, in); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b) != 44+2*len(in) || string(b[:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " ||
		binary.LittleEndian.Uint32(b[4:]) != uint32(len(b)-8) || binary.LittleEndian.Uint32(b[40:]) != uint32(2*len(in)) {
		t.Fatalf("bad header % x", b[:44])
	}
	w := mustWAV(t, b)
	if w.Rate() != 8000 || w.Duration() != time.Second {
		t.Fatalf("rate %d, duration %v", w.Rate(), w.Duration())
	}
	got, n := allSamples(t, w, 8000)
	if n != 50 || !slices.Equal(got, in) {
		t.Fatalf("%d frames; samples equal: %v", n, slices.Equal(got, in))
	}
	// Reading past the end keeps returning io.EOF.
	if err := w.ReadFrame(media.NewFrame(8000)); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}
}

func TestWAVPartialLastFrame(t *testing.T) {
	in := make([]int16, 250)
	for i := range in {
		in[i] = 1000
	}
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 8000, in); err != nil {
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	if w.Duration() != 31250*time.Microsecond {
		t.Fatalf("duration %v", w.Duration())
	}
	got, n := allSamples(t, w, 8000)
	if n != 2 {
		t.Fatalf("%d frames for 250 samples", n)
	}
	if !slices.Equal(got[:250], in) || slices.ContainsFunc(got[250:], func(v int16) bool { return v != 0 }) {
		t.Fatal("last frame not zero-padded")
	}
}

// Files at 16 and 48 kHz play at 8 kHz (and the other way round), aligned
// with the original and at the original level.
func TestWAVResampledPlayback(t *testing.T) {
	for _, tc := range []struct{ file, play int }{
		{16000, 8000}, {48000, 8000}, {8000, 16000}, {8000, 48000}, {48000, 16000}, {16000, 48000},
	} {
		in := dsp.Sine(tc.file, 1000, 10000, tc.file/2, 0.25) // 500 ms
		var buf bytes.Buffer
		if err := WriteWAV(&buf, tc.file, in); err != nil {
			t.Fatal(err)
		}
		w := mustWAV(t, buf.Bytes())
		got, n := allSamples(t, w, tc.play)
		if n != 25 {
			t.Errorf("%d->%d: %d frames for 500 ms", tc.file, tc.play, n)
		}
		ideal := dsp.Sine(tc.play, 1000, 10000, len(got), 0.25)
		edge := tc.play / 200 // the file starts and ends abruptly: skip 5 ms
		worst := 0.0
		for i := edge; i < len(got)-edge; i++ {
			worst = max(worst, math.Abs(float64(got[i])-float64(ideal[i])))
		}
		if worst > 20 {
			t.Errorf("%d->%d: deviates from the ideal tone by %.0f", tc.file, tc.play, worst)
		}
		// The same as the stateless conversion of the whole file.
		if whole := dsp.Resample(nil, in, tc.file, tc.play); !slices.Equal(got, whole) {
			t.Errorf("%d->%d: frame-wise playback differs from Resample of the whole", tc.file, tc.play)
		}
	}
}

func TestWAVRateChangeMidStream(t *testing.T) {
	in := dsp.Sine(16000, 1000, 10000, 16000, 0)
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 16000, in); err != nil {
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	f8, f48 := media.NewFrame(8000), media.NewFrame(48000)
	var a, b []int16
	for range 20 {
		if err := w.ReadFrame(f8); err != nil {
			t.Fatal(err)
		}
		a = append(a, f8.Samples...)
	}
	for range 30 {
		if err := w.ReadFrame(f48); err != nil {
			t.Fatal(err)
		}
		b = append(b, f48.Samples...)
	}
	if err := w.ReadFrame(f8); !errors.Is(err, io.EOF) {
		t.Fatalf("50 frames of 1 s, then %v", err)
	}
	// The 48 kHz part continues at 400 ms into the file.
	ideal := dsp.Sine(48000, 1000, 10000, 48000, 0)[48000*400/1000:]
	for i := range b[:len(b)-240] {
		if d := math.Abs(float64(b[i]) - float64(ideal[i])); d > 20 {
			t.Fatalf("48 kHz sample %d off by %.0f", i, d)
		}
	}
	if f, _ := dsp.DominantFrequency(a, 8000, 100, 3800, 10); math.Abs(f-1000) > 5 {
		t.Fatalf("8 kHz part at %.1f Hz", f)
	}
}

func TestWAVG711AndStereoFiles(t *testing.T) {
	tone := dsp.Sine(8000, 1000, 10000, 800, 0)
	var alaw, mulaw []byte
	for _, s := range tone {
		alaw = append(alaw, codec.AlawEncode(s))
		mulaw = append(mulaw, codec.MulawEncode(s))
	}
	decode := func(b []byte, dec func(byte) int16) []int16 {
		out := make([]int16, len(b))
		for i, v := range b {
			out[i] = dec(v)
		}
		return out
	}
	left := dsp.Sine(16000, 440, 8000, 1600, 0)
	right := dsp.Sine(16000, 440, 4000, 1600, 1)
	var stereo []int16
	var mix []int16
	for i := range left {
		stereo = append(stereo, left[i], right[i])
		mix = append(mix, int16((int32(left[i])+int32(right[i]))>>1))
	}
	var stereoMulaw []byte
	for i := range tone {
		stereoMulaw = append(stereoMulaw, codec.MulawEncode(tone[i]), codec.MulawEncode(-tone[i]))
	}

	for _, tc := range []struct {
		name string
		data []byte
		rate int
		want []int16
	}{
		{"A-law", riff(wavChunk("fmt ", wavFmt(6, 1, 8000, 8, 0, 0), true),
			wavChunk("fact", binary.LittleEndian.AppendUint32(nil, 800), true),
			wavChunk("data", alaw, true)), 8000, decode(alaw, codec.AlawDecode)},
		{"µ-law", riff(wavChunk("fmt ", wavFmt(7, 1, 8000, 8), true),
			wavChunk("data", mulaw, true)), 8000, decode(mulaw, codec.MulawDecode)},
		{"stereo PCM", riff(wavChunk("fmt ", wavFmt(1, 2, 16000, 16), true),
			wavChunk("data", pcmBytes(stereo), true)), 16000, mix},
		{"extensible stereo PCM", riff(wavChunk("fmt ", wavFmtExtensible(1, 2, 16000, 16), true),
			wavChunk("data", pcmBytes(stereo), true)), 16000, mix},
		{"extensible µ-law", riff(wavChunk("fmt ", wavFmtExtensible(7, 1, 8000, 8), true),
			wavChunk("data", mulaw, true)), 8000, decode(mulaw, codec.MulawDecode)},
		{"stereo µ-law cancels", riff(wavChunk("fmt ", wavFmt(7, 2, 8000, 8), true),
			wavChunk("data", stereoMulaw, true)), 8000, make([]int16, 800)},
		{"LIST chunks around fmt", riff(
			wavChunk("LIST", append([]byte("INFOISFT"), wavChunk("ISFT", []byte("switchboard"), true)...), true),
			wavChunk("fmt ", wavFmt(7, 1, 8000, 8), true),
			wavChunk("LIST", []byte("INFOodd"), true), // odd size, padded
			wavChunk("data", mulaw, true)), 8000, decode(mulaw, codec.MulawDecode)},
		{"odd chunk without its pad byte", riff(
			wavChunk("fmt ", wavFmt(7, 1, 8000, 8), true),
			wavChunk("junk", []byte("odd"), false),
			wavChunk("data", mulaw, true)), 8000, decode(mulaw, codec.MulawDecode)},
		{"odd data chunk, then more", riff(
			wavChunk("fmt ", wavFmt(7, 1, 8000, 8), true),
			wavChunk("data", mulaw[:799], true),
			wavChunk("LIST", []byte("INFO"), true)), 8000, decode(mulaw[:799], codec.MulawDecode)},
		{"data before fmt", riff(
			wavChunk("data", mulaw, true),
			wavChunk("fmt ", wavFmt(7, 1, 8000, 8), true)), 8000, decode(mulaw, codec.MulawDecode)},
		{"PCM with a stray odd byte", riff(wavChunk("fmt ", wavFmt(1, 1, 16000, 16), true),
			wavChunk("data", append(pcmBytes(left), 0x7F), true)), 16000, left},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mustWAV(t, tc.data)
			if w.Rate() != tc.rate {
				t.Fatalf("rate %d, want %d", w.Rate(), tc.rate)
			}
			if want := time.Duration(len(tc.want)) * time.Second / time.Duration(tc.rate); w.Duration() != want {
				t.Fatalf("duration %v, want %v", w.Duration(), want)
			}
			got, _ := allSamples(t, w, tc.rate)
			if !slices.Equal(got[:len(tc.want)], tc.want) {
				t.Fatal("samples differ")
			}
			if slices.ContainsFunc(got[len(tc.want):], func(v int16) bool { return v != 0 }) {
				t.Fatal("padding not silent")
			}
		})
	}
}

// Streaming writers leave the data size at 0 or 0xFFFFFFFF; truncated
// files claim more than they hold. All of them play to the end of the file.
func TestWAVDataSizeToEndOfFile(t *testing.T) {
	pcm := pcmBytes(dsp.Sine(8000, 1000, 10000, 400, 0))
	for _, size := range []uint32{0, 0xFFFFFFFF, uint32(len(pcm) + 1000)} {
		data := riff(wavChunk("fmt ", wavFmt(1, 1, 8000, 16), true), wavChunk("data", pcm, true))
		binary.LittleEndian.PutUint32(data[len(data)-len(pcm)-4:], size)
		binary.LittleEndian.PutUint32(data[4:], 0) // and a bogus RIFF size
		w := mustWAV(t, data)
		if w.Duration() != 50*time.Millisecond {
			t.Errorf("data size %#x: duration %v", size, w.Duration())
		}
	}
}

func TestWAVMalformed(t *testing.T) {
	goodFmt := wavChunk("fmt ", wavFmt(1, 1, 8000, 16), true)
	data := wavChunk("data", make([]byte, 320), true)
	badGUID := wavFmtExtensible(1, 1, 8000, 16)
	badGUID[30] ^= 0xFF
	truncatedFmt := riff(goodFmt)[:30]
	hugeUnknown := riff(wavChunk("LIST", nil, true), goodFmt, data)
	binary.LittleEndian.PutUint32(hugeUnknown[16:], 0x7FFFFFFF)
	hugeFmt := riff(goodFmt, data)
	binary.LittleEndian.PutUint32(hugeFmt[16:], 0xFFFFFFF0)

	for _, tc := range []struct {
		name    string
		data    []byte
		err     error
		mention string
	}{
		{"empty", nil, ErrInvalidWAV, "RIFF"},
		{"short", []byte("RIFF\x04\x00\x00\x00WAV"), ErrInvalidWAV, "RIFF"},
		{"not RIFF", slices.Concat([]byte("RIFX"), riff(goodFmt, data)[4:]), ErrInvalidWAV, "RIFF"},
		{"not WAVE", slices.Concat(riff(goodFmt, data)[:8], []byte("AVI "), riff(goodFmt, data)[12:]), ErrInvalidWAV, "RIFF"},
		{"no chunks", riff(), ErrInvalidWAV, "fmt"},
		{"no fmt", riff(data), ErrInvalidWAV, "fmt"},
		{"no data", riff(goodFmt), ErrInvalidWAV, "data"},
		{"fmt too short", riff(wavChunk("fmt ", wavFmt(1, 1, 8000, 16)[:14], true), data), ErrInvalidWAV, "fmt"},
		{"fmt truncated", truncatedFmt, ErrInvalidWAV, "truncated"},
		{"fmt size overflows", hugeFmt, ErrInvalidWAV, "truncated"},
		{"unknown chunk overflows", hugeUnknown, ErrInvalidWAV, "truncated"},
		{"rate 44100", riff(wavChunk("fmt ", wavFmt(1, 1, 44100, 16), true), data), ErrUnsupportedWAV, "44100 Hz"},
		{"rate 0", riff(wavChunk("fmt ", wavFmt(1, 1, 0, 16), true), data), ErrUnsupportedWAV, "0 Hz"},
		{"8-bit PCM", riff(wavChunk("fmt ", wavFmt(1, 1, 8000, 8), true), data), ErrUnsupportedWAV, "8-bit"},
		{"24-bit PCM", riff(wavChunk("fmt ", wavFmt(1, 1, 8000, 24), true), data), ErrUnsupportedWAV, "24-bit"},
		{"16-bit µ-law", riff(wavChunk("fmt ", wavFmt(7, 1, 8000, 16), true), data), ErrUnsupportedWAV, "16-bit"},
		{"float", riff(wavChunk("fmt ", wavFmt(3, 1, 8000, 32), true), data), ErrUnsupportedWAV, "format tag 0x3"},
		{"3 channels", riff(wavChunk("fmt ", wavFmt(1, 3, 8000, 16), true), data), ErrUnsupportedWAV, "3 channels"},
		{"0 channels", riff(wavChunk("fmt ", wavFmt(1, 0, 8000, 16), true), data), ErrUnsupportedWAV, "0 channels"},
		{"extensible too short", riff(wavChunk("fmt ", wavFmt(wavFormatExtensible, 1, 8000, 16), true), data), ErrInvalidWAV, "EXTENSIBLE"},
		{"extensible unknown GUID", riff(wavChunk("fmt ", badGUID, true), data), ErrUnsupportedWAV, "sub-format"},
		{"extensible float", riff(wavChunk("fmt ", wavFmtExtensible(3, 1, 8000, 32), true), data), ErrUnsupportedWAV, "format tag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWAVSource(bytes.NewReader(tc.data))
			if err == nil {
				t.Fatalf("accepted: rate %d, %v", w.Rate(), w.Duration())
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %q does not wrap %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestOpenWAV(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tone.wav")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteWAV(fh, 16000, dsp.Sine(16000, 440, 8000, 4000, 0)); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rate() != 16000 || w.Duration() != 250*time.Millisecond {
		t.Fatalf("rate %d, duration %v", w.Rate(), w.Duration())
	}
	if _, err := OpenWAV(filepath.Join(dir, "missing.wav")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.wav")
	if err := os.WriteFile(bad, []byte("RIFF....WAVE"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWAV(bad); !errors.Is(err, ErrInvalidWAV) || !strings.Contains(err.Error(), "bad.wav") {
		t.Fatalf("bad file: %v", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteWAVErrors(t *testing.T) {
	if err := WriteWAV(io.Discard, 0, nil); err == nil {
		t.Error("rate 0 accepted")
	}
	if err := WriteWAV(failWriter{}, 8000, []int16{1}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("write error lost: %v", err)
	}
	// An empty file is valid and plays nothing.
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 8000, nil); err != nil {
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	if _, n := allSamples(t, w, 8000); n != 0 || w.Duration() != 0 {
		t.Fatalf("empty file: %d frames, %v", n, w.Duration())
	}
}

func TestWAVRewindCloneLoop(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 16000, dsp.Sine(16000, 700, 8000, 3200, 0)); err != nil { // 200 ms
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	first, _ := allSamples(t, w, 8000)
	w.Rewind()
	again, n := allSamples(t, w, 8000)
	if n != 10 || !slices.Equal(first, again) {
		t.Fatalf("rewound: %d frames, equal %v", n, slices.Equal(first, again))
	}

	// A clone shares the samples but not the position.
	w.Rewind()
	f := media.NewFrame(8000)
	for range 3 {
		if err := w.ReadFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	c := w.Clone()
	if &c.samples[0] != &w.samples[0] {
		t.Fatal("clone copied the samples")
	}
	if got, _ := allSamples(t, c, 8000); !slices.Equal(got, first) {
		t.Fatal("clone does not start at the beginning")
	}
	if rest, n := allSamples(t, w, 8000); n != 7 || !slices.Equal(rest, first[3*160:]) {
		t.Fatalf("original lost its place: %d frames left", n)
	}

	// Many clones play at once.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func(c *WAVSource) {
			defer wg.Done()
			f := media.NewFrame(8000)
			var got []int16
			for c.ReadFrame(f) == nil {
				got = append(got, f.Samples...)
			}
			if !slices.Equal(got, first) {
				t.Error("concurrent clone played something else")
			}
		}(w.Clone())
	}
	wg.Wait()

	// A prompt loops.
	if got, n := allSamples(t, media.Loop(w.Clone(), 3), 8000); n != 30 || !slices.Equal(got[1600:3200], first) {
		t.Fatalf("looped prompt: %d frames", n)
	}
}

func TestWAVReadFrameBadRate(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 8000, make([]int16, 800)); err != nil {
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	for _, rate := range []int{0, 12000, 44100} {
		if err := w.ReadFrame(media.NewFrame(rate)); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("rate %d: %v", rate, err)
		}
	}
}

func TestWAVReadFrameDoesNotAllocate(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteWAV(&buf, 48000, dsp.Sine(48000, 700, 8000, 48000*10, 0)); err != nil {
		t.Fatal(err)
	}
	w := mustWAV(t, buf.Bytes())
	for _, rate := range []int{48000, 8000} {
		f := media.NewFrame(rate)
		if err := w.ReadFrame(f); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(50, func() { _ = w.ReadFrame(f) }); n != 0 {
			t.Errorf("ReadFrame at %d Hz allocates %.1f times per frame", rate, n)
		}
	}
}

func FuzzNewWAVSource(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteWAV(&buf, 8000, dsp.Sine(8000, 1000, 8000, 200, 0))
	f.Add(buf.Bytes())
	buf.Reset()
	_ = WriteWAV(&buf, 48000, dsp.Sine(48000, 1000, 8000, 100, 0))
	f.Add(buf.Bytes())
	f.Add(riff(wavChunk("fmt ", wavFmt(7, 2, 16000, 8), true), wavChunk("LIST", []byte("INFOx"), false), wavChunk("data", make([]byte, 101), true)))
	f.Add(riff(wavChunk("fmt ", wavFmtExtensible(6, 1, 8000, 8), true), wavChunk("data", nil, true)))
	f.Add(riff(wavChunk("data", []byte{1, 2, 3}, true), wavChunk("fmt ", wavFmt(1, 1, 16000, 16), true)))
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVEfmt \xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := NewWAVSource(bytes.NewReader(data))
		if err != nil {
			if w != nil {
				t.Fatal("source and error")
			}
			return
		}
		if w.Duration() < 0 {
			t.Fatalf("duration %v", w.Duration())
		}
		frames := int(w.Duration()/media.FrameDuration) + 1
		for _, rate := range []int{w.Rate(), 8000, 48000} {
			w.Rewind()
			fr := media.NewFrame(rate)
			n := 0
			for ; n <= frames+1; n++ {
				if err := w.ReadFrame(fr); err != nil {
					if !errors.Is(err, io.EOF) {
						t.Fatal(err)
					}
					break
				}
			}
			if n > frames {
				t.Fatalf("%d frames at %d Hz for %v", n, rate, w.Duration())
			}
		}
		_ = w.Clone()
	})
}
