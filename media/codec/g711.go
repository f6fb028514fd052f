package codec

import (
	"math/bits"
	"slices"
)

// G.711 (ITU-T Recommendation G.711) companding, applied to 16-bit linear
// PCM. The law proper works on 14-bit (µ-law) and 13-bit (A-law) samples; the
// extra low-order bits of a 16-bit sample are ignored on encode and decoded
// values are the midpoints of the quantisation intervals, scaled to 16 bits.

const (
	mulawBias = 0x84  // 33 in 14-bit units, scaled to 16 bits
	mulawClip = 32635 // largest magnitude that does not overflow after biasing
)

// PCMU is the G.711 µ-law codec (RTP payload type 0) at 8000 Hz. It is
// stateless; the zero value is ready to use.
type PCMU struct{}

// PCMA is the G.711 A-law codec (RTP payload type 8) at 8000 Hz. It is
// stateless; the zero value is ready to use.
type PCMA struct{}

// Encode appends one µ-law byte per sample of pcm to dst and returns it. It
// does not allocate when dst has room for len(pcm) more bytes.
func (PCMU) Encode(dst []byte, pcm []int16) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(pcm))[:n+len(pcm)]
	out := dst[n:]
	for i, s := range pcm {
		out[i] = MulawEncode(s)
	}
	return dst
}

// Decode appends one sample per µ-law byte of payload to dst and returns it.
// It does not allocate when dst has room for len(payload) more samples.
func (PCMU) Decode(dst []int16, payload []byte) []int16 {
	n := len(dst)
	dst = slices.Grow(dst, len(payload))[:n+len(payload)]
	out := dst[n:]
	for i, b := range payload {
		out[i] = mulawDecodeTable[b]
	}
	return dst
}

// Encode appends one A-law byte per sample of pcm to dst and returns it. It
// does not allocate when dst has room for len(pcm) more bytes.
func (PCMA) Encode(dst []byte, pcm []int16) []byte {
	n := len(dst)
	dst = slices.Grow(dst, len(pcm))[:n+len(pcm)]
	out := dst[n:]
	for i, s := range pcm {
		out[i] = AlawEncode(s)
	}
	return dst
}

// Decode appends one sample per A-law byte of payload to dst and returns it.
// It does not allocate when dst has room for len(payload) more samples.
func (PCMA) Decode(dst []int16, payload []byte) []int16 {
	n := len(dst)
	dst = slices.Grow(dst, len(payload))[:n+len(payload)]
	out := dst[n:]
	for i, b := range payload {
		out[i] = alawDecodeTable[b]
	}
	return dst
}

// MulawEncode compresses one 16-bit linear sample to a G.711 µ-law byte,
// bit-exact with the ITU-T G.191 reference encoder applied to the top 14
// bits. Silence (0) encodes to 0xFF; magnitudes above 32635 are clipped.
func MulawEncode(s int16) byte {
	x := int32(s)
	mask := byte(0xFF) // positive: sign bit set after inversion
	if x < 0 {
		x = ^x // one's complement, as in ITU-T G.191: -1 -> 0
		mask = 0x7F
	}
	if x > mulawClip {
		x = mulawClip
	}
	x += mulawBias // now 132..32767: the leading one is at bit 7..14
	exp := bits.Len32(uint32(x)>>7) - 1
	mant := (x >> (uint(exp) + 3)) & 0x0F
	return byte(exp<<4|int(mant)) ^ mask
}

// MulawDecode expands one G.711 µ-law byte to a 16-bit linear sample.
func MulawDecode(b byte) int16 { return mulawDecodeTable[b] }

// AlawEncode compresses one 16-bit linear sample to a G.711 A-law byte
// (with the even bits inverted, as transmitted), bit-exact with the ITU-T
// G.191 reference encoder applied to the top 13 bits. Silence (0) encodes
// to 0xD5.
func AlawEncode(s int16) byte {
	x := int32(s)
	mask := byte(0xD5) // positive: sign bit set, even bits inverted
	if x < 0 {
		x = ^x // one's complement, as in the recommendation: -1 -> 0
		mask = 0x55
	}
	// x is 0..32767; A-law segment 0 and 1 share the step 16.
	var code int32
	if x < 256 {
		code = x >> 4
	} else {
		seg := int32(bits.Len32(uint32(x) >> 8)) // 1..7
		code = seg<<4 | (x>>(seg+3))&0x0F
	}
	return byte(code) ^ mask
}

// AlawDecode expands one G.711 A-law byte to a 16-bit linear sample.
func AlawDecode(b byte) int16 { return alawDecodeTable[b] }

// mulawDecodeTable maps every µ-law byte to its linear value (read-only).
var mulawDecodeTable = func() (t [256]int16) {
	for i := range t {
		u := ^byte(i)
		exp := uint(u>>4) & 7
		mant := int32(u & 0x0F)
		x := ((mant<<3)+mulawBias)<<exp - mulawBias
		if u&0x80 != 0 {
			x = -x
		}
		t[i] = int16(x)
	}
	return t
}()

// alawDecodeTable maps every A-law byte to its linear value (read-only).
var alawDecodeTable = func() (t [256]int16) {
	for i := range t {
		a := byte(i) ^ 0x55
		seg := uint(a>>4) & 7
		x := int32(a&0x0F)<<4 + 8
		if seg > 0 {
			x = (x + 0x100) << (seg - 1)
		}
		if a&0x80 == 0 {
			x = -x
		}
		t[i] = int16(x)
	}
	return t
}()
