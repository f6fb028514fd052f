package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// g722Delay is the delay of the transmit and receive QMFs together, in
// 16 kHz samples.
const g722Delay = 22

// g722RoundTrip encodes in frame by frame (20 ms) and decodes the result.
func g722RoundTrip(t testing.TB, in []int16) (coded []byte, out []int16) {
	t.Helper()
	enc, dec := NewG722(), NewG722()
	for i := 0; i+320 <= len(in); i += 320 {
		n := len(coded)
		coded = enc.Encode(coded, in[i:i+320])
		if len(coded)-n != 160 {
			t.Fatalf("frame %d: %d octets, want 160", i/320, len(coded)-n)
		}
		out = dec.Decode(out, coded[n:])
	}
	return coded, out
}

// snrDB compares got, delayed by delay samples, with want over want[from:to].
func snrDB(want, got []int16, delay, from, to int) float64 {
	var sig, noise float64
	for i := from; i < to; i++ {
		e := float64(got[i+delay]) - float64(want[i])
		sig += float64(want[i]) * float64(want[i])
		noise += e * e
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

func sine16k(freq, amp float64, n int) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(math.Round(amp * math.Sin(2*math.Pi*freq*float64(i)/16000)))
	}
	return s
}

// A tone goes through encode and decode at its own frequency and with the
// quality G.722 is known for: the lower band (6 bits) is much cleaner than
// the higher band (2 bits).
func TestG722ToneRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		freq, minSNR float64
	}{
		{300, 55}, {1000, 42}, {3000, 36}, {5000, 18}, {6500, 20},
	} {
		in := sine16k(tc.freq, 10000, 16000) // -10 dBFS, 1 s
		_, out := g722RoundTrip(t, in)
		f, _ := dsp.DominantFrequency(out[4000:12000], 16000, 100, 7900, 10)
		if math.Abs(f-tc.freq) > 1 {
			t.Errorf("%.0f Hz tone came out at %.1f Hz", tc.freq, f)
		}
		if snr := snrDB(in, out, g722Delay, 2000, 15000); snr < tc.minSNR {
			t.Errorf("%.0f Hz tone: SNR %.1f dB, want >= %.0f", tc.freq, snr, tc.minSNR)
		} else {
			t.Logf("%.0f Hz: SNR %.1f dB", tc.freq, snr)
		}
		if r := dsp.RMS(out[4000:12000]); math.Abs(20*math.Log10(r/dsp.RMS(in[4000:12000]))) > 0.5 {
			t.Errorf("%.0f Hz tone: level changed by %.2f dB", tc.freq, 20*math.Log10(r/dsp.RMS(in[4000:12000])))
		}
	}
}

// Silence decodes to the codec's idle noise, far below anything audible
// (a few LSBs, under -70 dBFS).
func TestG722Silence(t *testing.T) {
	_, out := g722RoundTrip(t, make([]int16, 3200))
	peak := 0
	for _, s := range out {
		peak = max(peak, int(s), -int(s))
	}
	if peak > 8 {
		t.Errorf("decoded silence peaks at %d", peak)
	}
}

// Odd-length input is carried over: chunked input codes exactly as one piece.
func TestG722OddChunks(t *testing.T) {
	in := g722TestSignal(8000)
	whole := NewG722().Encode(nil, in)
	g := NewG722()
	var chunked []byte
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(in); {
		n := min(len(in)-i, 1+r.IntN(45))
		chunked = g.Encode(chunked, in[i:i+n])
		i += n
	}
	if !bytes.Equal(whole, chunked) {
		t.Fatal("odd-sized chunks encode differently from the whole signal")
	}
}

func TestG722AllocatesNothing(t *testing.T) {
	g := NewG722()
	pcm := sine16k(1000, 8000, 320)
	payload := make([]byte, 0, 160)
	out := make([]int16, 0, 320)
	if a := testing.AllocsPerRun(200, func() { payload = g.Encode(payload[:0], pcm) }); a != 0 {
		t.Errorf("Encode: %v allocations per frame", a)
	}
	if a := testing.AllocsPerRun(200, func() { out = g.Decode(out[:0], payload) }); a != 0 {
		t.Errorf("Decode: %v allocations per frame", a)
	}
}

func TestG722Registered(t *testing.T) {
	c, ok := LookupStaticPayloadType(9)
	if !ok || c.Name != "G722" {
		t.Fatalf("payload type 9 = %+v, %v; want G722", c, ok)
	}
	if c.ClockRate != 8000 || c.SampleRate != 16000 || c.TimestampStep() != 160 || c.SamplesPerFrame() != 320 {
		t.Errorf("G722 spec %+v: want clock 8000, 16 kHz audio, step 160, 320 samples", c)
	}
	if c2, ok := LookupCodec("g722", 8000); !ok || c2.PayloadType != 9 {
		t.Errorf("LookupCodec(g722, 8000) = %+v, %v", c2, ok)
	}
	if _, ok := LookupCodec("G722", 16000); ok {
		t.Error("G722/16000 must not match: RTP clock rate of G.722 is 8000")
	}
	if cs := Codecs(); cs[0].Name != "PCMU" || cs[1].Name != "PCMA" {
		t.Errorf("preference order starts %s, %s; want PCMU, PCMA", cs[0].Name, cs[1].Name)
	}
	// Two instances do not share state.
	a, b := c.New(), c.New()
	p1 := a.Encode(nil, sine16k(1000, 8000, 320))
	p2 := b.Encode(nil, sine16k(1000, 8000, 320))
	if !bytes.Equal(p1, p2) {
		t.Error("fresh instances encode the same frame differently")
	}
}

// g722TestSignal is a deterministic test signal at 16 kHz: a logarithmic
// sweep 50 Hz–7.9 kHz, seeded noise at three levels, a full-scale square
// wave (saturation paths) and silence.
func g722TestSignal(n int) []int16 {
	s := make([]int16, 0, n)
	sweep := n / 2
	phase := 0.0
	for i := 0; i < sweep; i++ {
		f := 50 * math.Pow(7900.0/50, float64(i)/float64(sweep))
		phase += 2 * math.Pi * f / 16000
		s = append(s, int16(16000*math.Sin(phase)))
	}
	r := rand.New(rand.NewPCG(722, 1))
	for _, amp := range []float64{300, 3000, 20000} {
		for i := 0; i < n/10; i++ {
			s = append(s, int16(max(-32768, min(32767, r.NormFloat64()*amp))))
		}
	}
	for i := 0; len(s) < n-n/20; i++ {
		if i/20%2 == 0 {
			s = append(s, 32767)
		} else {
			s = append(s, -32768)
		}
	}
	for len(s) < n {
		s = append(s, 0)
	}
	return s
}

func needBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed; apt-get install %s", name, pkg)
	}
	return p
}

func writeS16(t *testing.T, path string, s []int16) {
	t.Helper()
	b := make([]byte, 2*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readS16(t *testing.T, path string) []int16 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := make([]int16, len(b)/2)
	for i := range s {
		s[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
	}
	return s
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}

// espeakSpeech returns a few seconds of espeak-ng speech at rate Hz, or
// nil when espeak-ng or sox is missing outside CI (fails in CI).
func espeakSpeech(t *testing.T, rate int) []int16 {
	t.Helper()
	for _, bin := range []string{"espeak-ng", "sox"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI (apt-get install %s)", bin, bin)
			}
			return nil
		}
	}
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "speech-22k.wav"), filepath.Join(dir, "speech.raw")
	run(t, "espeak-ng", "-v", "en-us", "-w", raw, "Thank you for calling. Please say the name of the person you wish to reach, or press zero for the operator.")
	run(t, "sox", raw, "-r", fmt.Sprint(rate), "-b", "16", "-c", "1", "-e", "signed-integer", "-t", "raw", out)
	s := readS16(t, out)
	frame := rate * FrameMs / 1000
	return s[:len(s)/frame*frame]
}

// compareDecoders requires two decodes of the same G.722 stream to be
// identical sample for sample: the decoder arithmetic is fully specified by
// the Recommendation, so a conforming decoder has no freedom at all.
func compareDecoders(t *testing.T, what string, ours, theirs []int16) {
	t.Helper()
	if len(ours) != len(theirs) {
		t.Fatalf("%s: we decoded %d samples, ffmpeg %d", what, len(ours), len(theirs))
	}
	diff, maxDiff, first := 0, 0, -1
	for i := range ours {
		if d := int(ours[i]) - int(theirs[i]); d != 0 {
			diff++
			maxDiff = max(maxDiff, d, -d)
			if first < 0 {
				first = i
			}
		}
	}
	if diff != 0 {
		t.Errorf("%s: %d of %d samples differ from ffmpeg's decode (first at %d, max |diff| %d, SNR %.1f dB); want bit-exact",
			what, diff, len(ours), first, maxDiff, snrDB(theirs, ours, 0, 0, len(ours)))
	} else {
		t.Logf("%s: %d samples bit-exact with ffmpeg", what, len(ours))
	}
}

// Independent check against ffmpeg's G.722 (a separate implementation):
// our stream decoded by ffmpeg equals our own decode, and ffmpeg's stream
// decoded by us equals ffmpeg's own decode, on synthetic signals and on
// speech.
func TestG722AgainstFFmpeg(t *testing.T) {
	ffmpeg := needBinary(t, "ffmpeg", "ffmpeg")
	signals := map[string][]int16{"synthetic": g722TestSignal(5 * 16000)}
	if s := espeakSpeech(t, 16000); s != nil {
		signals["speech"] = s
	}
	for name, in := range signals {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pcm, ourG722, ffDec := filepath.Join(dir, "in.raw"), filepath.Join(dir, "ours.g722"), filepath.Join(dir, "ffdec.raw")
			ffG722, ffDec2 := filepath.Join(dir, "ff.g722"), filepath.Join(dir, "ffdec2.raw")
			writeS16(t, pcm, in)

			// Our encoder, both decoders.
			coded, ours := g722RoundTrip(t, in)
			if err := os.WriteFile(ourG722, coded, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "g722", "-i", ourG722, "-f", "s16le", "-ar", "16000", ffDec)
			compareDecoders(t, "our stream", ours, readS16(t, ffDec))
			if snr := snrDB(in, ours, g722Delay, 1000, len(in)-1000); snr < 10 {
				t.Errorf("round trip SNR %.1f dB, want >= 10", snr)
			}

			// ffmpeg's encoder, both decoders.
			run(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", pcm, "-c:a", "g722", "-f", "g722", ffG722)
			run(t, ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "g722", "-i", ffG722, "-f", "s16le", "-ar", "16000", ffDec2)
			ffCoded, err := os.ReadFile(ffG722)
			if err != nil {
				t.Fatal(err)
			}
			compareDecoders(t, "ffmpeg's stream", NewG722().Decode(nil, ffCoded), readS16(t, ffDec2))

			// The encoders: both follow the Recommendation, so they agree too.
			same := 0
			for i := range min(len(coded), len(ffCoded)) {
				if coded[i] == ffCoded[i] {
					same++
				}
			}
			if len(coded) != len(ffCoded) || same != len(coded) {
				t.Errorf("encoders: %d of %d octets identical (lengths %d, %d)", same, len(coded), len(coded), len(ffCoded))
			}
		})
	}
}

// Arbitrary payloads decode without panicking, to exactly two samples per
// octet, within the 16-bit range by construction.
func FuzzG722Decode(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 160))
	f.Add(bytes.Repeat([]byte{0x00}, 160))
	f.Add(bytes.Repeat([]byte{0x20, 0x3f, 0xc0, 0x7e}, 200))
	f.Add(NewG722().Encode(nil, g722TestSignal(3200)))
	f.Fuzz(func(t *testing.T, payload []byte) {
		g := NewG722()
		out := g.Decode(nil, payload)
		if len(out) != 2*len(payload) {
			t.Fatalf("%d octets decoded to %d samples", len(payload), len(out))
		}
		// The state must stay usable: decode again on top of it.
		_ = g.Decode(out[:0], payload)
	})
}

func BenchmarkG722Encode(b *testing.B) {
	g := NewG722()
	pcm := g722TestSignal(320)
	dst := make([]byte, 0, 160)
	b.ReportAllocs()
	for b.Loop() {
		dst = g.Encode(dst[:0], pcm)
	}
}

func BenchmarkG722Decode(b *testing.B) {
	g := NewG722()
	payload := NewG722().Encode(nil, g722TestSignal(320))
	dst := make([]int16, 0, 320)
	b.ReportAllocs()
	for b.Loop() {
		dst = g.Decode(dst[:0], payload)
	}
}
