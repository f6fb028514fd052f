package codec

import (
	"math"
	"testing"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

func TestG711KnownValues(t *testing.T) {
	for _, tc := range []struct {
		in          int16
		mulaw, alaw byte
	}{
		{0, 0xFF, 0xD5},
		{-1, 0x7F, 0x55},
		{1, 0xFF, 0xD5},
		{8, 0xFE, 0xD5},
		{16, 0xFD, 0xD4},
		{1000, 0xCE, 0xFA},
		{-1000, 0x4E, 0x7A},
		{32767, 0x80, 0xAA},
		{-32768, 0x00, 0x2A},
		{32635, 0x80, 0xAA},
	} {
		if got := MulawEncode(tc.in); got != tc.mulaw {
			t.Errorf("MulawEncode(%d) = %#02x, want %#02x", tc.in, got, tc.mulaw)
		}
		if got := AlawEncode(tc.in); got != tc.alaw {
			t.Errorf("AlawEncode(%d) = %#02x, want %#02x", tc.in, got, tc.alaw)
		}
	}
	for _, tc := range []struct {
		mulaw byte
		want  int16
	}{
		{0xFF, 0}, {0x7F, 0}, {0xFE, 8}, {0x7E, -8}, {0x80, 32124}, {0x00, -32124}, {0xCE, 988},
	} {
		if got := MulawDecode(tc.mulaw); got != tc.want {
			t.Errorf("MulawDecode(%#02x) = %d, want %d", tc.mulaw, got, tc.want)
		}
	}
	for _, tc := range []struct {
		alaw byte
		want int16
	}{
		{0xD5, 8}, {0x55, -8}, {0xD4, 24}, {0xAA, 32256}, {0x2A, -32256}, {0xFA, 1008},
	} {
		if got := AlawDecode(tc.alaw); got != tc.want {
			t.Errorf("AlawDecode(%#02x) = %d, want %d", tc.alaw, got, tc.want)
		}
	}
}

// refMulaw and refAlaw follow the structure of the ITU-T G.191 reference
// coder (14- and 13-bit magnitudes, one's complement for negatives,
// segment found by shifting), independently of the bit tricks above.
func refMulaw(s int16) byte {
	lin := int(s)
	absno := (lin >> 2) + 33
	if lin < 0 {
		absno = ((^lin) >> 2) + 33
	}
	absno = min(absno, 0x1FFF)
	segno := 1
	for i := absno >> 6; i != 0; i >>= 1 {
		segno++
	}
	out := (8-segno)<<4 | (15 - (absno>>segno)&0x0F)
	if lin >= 0 {
		out |= 0x80
	}
	return byte(out)
}

func refAlaw(s int16) byte {
	lin := int(s)
	ix := lin >> 4
	if lin < 0 {
		ix = (^lin) >> 4
	}
	if ix > 15 {
		exp := 1
		for ix > 16+15 {
			ix >>= 1
			exp++
		}
		ix = ix - 16 + exp<<4
	}
	if lin >= 0 {
		ix |= 0x80
	}
	return byte(ix ^ 0x55)
}

func refMulawExpand(b byte) int16 {
	sign := 1
	if b < 0x80 {
		sign = -1
	}
	m := int(^b)
	exp := (m >> 4) & 7
	seg := exp + 1
	step := 4 << seg
	return int16(sign * ((0x80 << exp) + step*(m&0x0F) + step/2 - 4*33))
}

func refAlawExpand(b byte) int16 {
	ix := int(b^0x55) & 0x7F
	exp, mant := ix>>4, ix&0x0F
	if exp > 0 {
		mant += 16
	}
	mant = mant<<4 + 8
	if exp > 1 {
		mant <<= exp - 1
	}
	if b > 127 {
		return int16(mant)
	}
	return int16(-mant)
}

func TestG711MatchesReference(t *testing.T) {
	for i := math.MinInt16; i <= math.MaxInt16; i++ {
		s := int16(i)
		if got, want := MulawEncode(s), refMulaw(s); got != want {
			t.Fatalf("MulawEncode(%d) = %#02x, reference %#02x", s, got, want)
		}
		if got, want := AlawEncode(s), refAlaw(s); got != want {
			t.Fatalf("AlawEncode(%d) = %#02x, reference %#02x", s, got, want)
		}
	}
	for i := range 256 {
		b := byte(i)
		if got, want := MulawDecode(b), refMulawExpand(b); got != want {
			t.Fatalf("MulawDecode(%#02x) = %d, reference %d", b, got, want)
		}
		if got, want := AlawDecode(b), refAlawExpand(b); got != want {
			t.Fatalf("AlawDecode(%#02x) = %d, reference %d", b, got, want)
		}
	}
}

// Every input comes back within half a quantisation step: 1/32 of its
// magnitude (4 and 8 for the smallest µ-law and A-law steps), except where
// µ-law clips above 32635.
func TestG711RoundTripErrorBounds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		enc   func(int16) byte
		dec   func(byte) int16
		bound func(mag float64) float64
	}{
		{"mulaw", MulawEncode, MulawDecode, func(m float64) float64 {
			if m > 32635 {
				return m - 32124
			}
			return (m + 132) / 32
		}},
		{"alaw", AlawEncode, AlawDecode, func(m float64) float64 { return max(8, m/32) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			worst := 0.0
			for i := math.MinInt16; i <= math.MaxInt16; i++ {
				got := tc.dec(tc.enc(int16(i)))
				err := math.Abs(float64(got) - float64(i))
				if err > tc.bound(math.Abs(float64(i))) {
					t.Fatalf("%d -> %d: error %g, bound %g", i, got, err, tc.bound(math.Abs(float64(i))))
				}
				if (got < 0 && i > 0) || (got > 0 && i < 0) {
					t.Fatalf("%d -> %d changes sign", i, got)
				}
				worst = max(worst, err)
			}
			t.Logf("worst absolute error %g", worst)
			// Decoded values are fixed points of the round trip.
			for b := range 256 {
				v := tc.dec(byte(b))
				if got := tc.dec(tc.enc(v)); got != v {
					t.Fatalf("decoded %d re-encodes to %d", v, got)
				}
			}
		})
	}
}

func TestG711ToneRoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU{}, PCMA{}} {
		in := dsp.Sine(8000, 1000, 10000, 8000, 0.1)
		var payload []byte
		var out []int16
		for off := 0; off < len(in); off += 160 {
			payload = c.Encode(payload[:0], in[off:off+160])
			if len(payload) != 160 {
				t.Fatalf("%T: %d bytes for 160 samples", c, len(payload))
			}
			out = c.Decode(out, payload)
		}
		if len(out) != len(in) {
			t.Fatalf("%T: %d samples back, want %d", c, len(out), len(in))
		}
		f, p := dsp.DominantFrequency(out, 8000, 100, 3800, 10)
		if math.Abs(f-1000) > 5 {
			t.Errorf("%T: tone came back at %.1f Hz", c, f)
		}
		// Almost all of the power stays at 1 kHz: G.711 gives ~38 dB SNR.
		if share := p / (dsp.RMS(out) * dsp.RMS(out)); share < 0.999 {
			t.Errorf("%T: %.4f of the power at 1 kHz", c, share)
		}
		var noise float64
		for i := range in {
			d := float64(out[i]) - float64(in[i])
			noise += d * d
		}
		snr := 10 * math.Log10(dsp.RMS(in)*dsp.RMS(in)*float64(len(in))/noise)
		if snr < 35 {
			t.Errorf("%T: SNR %.1f dB, want ≥ 35", c, snr)
		}
	}
}

func TestG711AppendsAndDoesNotAllocate(t *testing.T) {
	pcm := dsp.Sine(8000, 440, 8000, 160, 0)
	for _, c := range []Codec{PCMU{}, PCMA{}} {
		// Appends after what dst already holds.
		enc := c.Encode([]byte{1, 2, 3}, pcm)
		if len(enc) != 163 || enc[0] != 1 || enc[2] != 3 {
			t.Fatalf("%T.Encode did not append: len %d", c, len(enc))
		}
		dec := c.Decode([]int16{-7}, enc[3:])
		if len(dec) != 161 || dec[0] != -7 {
			t.Fatalf("%T.Decode did not append: len %d", c, len(dec))
		}
		// Empty input returns dst unchanged (nil stays nil).
		if got := c.Encode(nil, nil); got != nil {
			t.Errorf("%T.Encode(nil, nil) = %v", c, got)
		}

		bbuf := make([]byte, 0, 200)
		sbuf := make([]int16, 0, 200)
		if n := testing.AllocsPerRun(100, func() { bbuf = c.Encode(bbuf[:0], pcm) }); n != 0 {
			t.Errorf("%T.Encode allocates %.1f times", c, n)
		}
		if n := testing.AllocsPerRun(100, func() { sbuf = c.Decode(sbuf[:0], bbuf) }); n != 0 {
			t.Errorf("%T.Decode allocates %.1f times", c, n)
		}
	}
}

func TestG711CodecSpecs(t *testing.T) {
	for _, name := range []string{"PCMU", "PCMA"} {
		spec, ok := LookupCodec(name, 8000)
		if !ok {
			t.Fatalf("%s not registered", name)
		}
		c := spec.New()
		pcm := dsp.Sine(spec.SampleRate, 1000, 8000, spec.SamplesPerFrame(), 0)
		if got := c.Decode(nil, c.Encode(nil, pcm)); len(got) != len(pcm) {
			t.Fatalf("%s: %d samples back", name, len(got))
		}
	}
	if _, ok := LookupCodec("PCMU", 8000); !ok {
		t.Fatal("PCMU missing")
	}
	if c, _ := LookupStaticPayloadType(8); c.Name != "PCMA" {
		t.Fatalf("payload type 8 is %q", c.Name)
	}
}

func benchmarkEncode(b *testing.B, c Codec) {
	pcm := dsp.Sine(8000, 1000, 8000, 160, 0)
	buf := make([]byte, 0, 160)
	b.ReportAllocs()
	b.SetBytes(int64(len(pcm) * 2))
	for b.Loop() {
		buf = c.Encode(buf[:0], pcm)
	}
}

func benchmarkDecode(b *testing.B, c Codec) {
	payload := c.Encode(nil, dsp.Sine(8000, 1000, 8000, 160, 0))
	buf := make([]int16, 0, 160)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		buf = c.Decode(buf[:0], payload)
	}
}

// The benchmarks measure one 20 ms frame (160 samples).
func BenchmarkPCMUEncode(b *testing.B) { benchmarkEncode(b, PCMU{}) }
func BenchmarkPCMUDecode(b *testing.B) { benchmarkDecode(b, PCMU{}) }
func BenchmarkPCMAEncode(b *testing.B) { benchmarkEncode(b, PCMA{}) }
func BenchmarkPCMADecode(b *testing.B) { benchmarkDecode(b, PCMA{}) }
