package codec

import "slices"

// G.722 (ITU-T Recommendation G.722, 1988): 7 kHz audio in 64 kbit/s by
// sub-band ADPCM. A pair of quadrature mirror filters splits the 16 kHz
// input into a lower band (0–4 kHz) and a higher band (4–8 kHz), each at
// 8 kHz; the lower band is coded with 6 bits per sample by an adaptive
// quantiser, the higher band with 2 bits, and both quantisers work on the
// difference between the band signal and the output of an adaptive
// pole-zero predictor (2 poles, 6 zeros) whose coefficients and scale
// factor both ends derive from the transmitted codes alone. Each octet
// carries one sample of each band: the 2 higher-band bits on top, the 6
// lower-band bits below (mode 1, 64 kbit/s, the mode RTP uses; modes 2 and
// 3 lend the lowest one or two bits to a data channel and are not
// implemented).
//
// The arithmetic below is the fixed-point arithmetic the Recommendation
// specifies block by block (the block names in comments are its names), so
// the output matches that of any implementation that follows it to the bit:
// ours matches ffmpeg's exactly, encoder and decoder (TestG722AgainstFFmpeg;
// the ITU-T test sequences were not available to us). Signals inside the
// coder are 15-bit (the Recommendation's 14-bit uniform PCM with one more
// bit of headroom); 16-bit input is scaled to them by the transmit QMF and
// back by the receive QMF.

// G722 is the G.722 codec at 64 kbit/s (RTP payload type 9). RTP counts
// its timestamps at 8000 Hz (RFC 3551 §4.5.2 keeps the rate G.722 was
// first, wrongly, registered with) although it carries 16 kHz audio, so a
// 20 ms frame is 320 samples, 160 octets, and advances the timestamp by
// 160.
//
// A G722 value holds the adaptive state of one stream: one encoder and one
// decoder, independent of each other. Use a separate value (NewG722) for
// each stream and direction that must not share history; the value is not
// safe for concurrent use. Encoding or decoding a 20 ms frame costs about
// 10 µs (docs/BENCHMARKS.md) and allocates nothing when dst has room.
type G722 struct {
	enc g722Encoder
	dec g722Decoder
}

// NewG722 returns a G.722 codec in its initial (reset) state.
func NewG722() *G722 {
	g := &G722{}
	g.Reset()
	return g
}

// Reset returns both directions to the initial state of the
// Recommendation, as at the start of a stream.
func (g *G722) Reset() {
	g.enc.reset()
	g.dec.reset()
}

// Encode appends one octet per two samples of pcm (16 kHz) to dst and
// returns it. An odd trailing sample is kept and coded with the first
// sample of the next call. It does not allocate when dst has room for
// len(pcm)/2+1 more bytes.
func (g *G722) Encode(dst []byte, pcm []int16) []byte {
	e := &g.enc
	if e.low.det == 0 { // zero value: never reset (det is never 0 after)
		e.reset()
	}
	n := len(dst)
	out := (len(pcm) + btoi(e.pending)) / 2
	dst = slices.Grow(dst, out)[:n+out]
	o := dst[n:]
	i := 0
	if e.pending && len(pcm) > 0 {
		o[0] = e.encodePair(e.held, pcm[0])
		o = o[1:]
		i = 1
		e.pending = false
	}
	for ; i+1 < len(pcm); i += 2 {
		o[0] = e.encodePair(pcm[i], pcm[i+1])
		o = o[1:]
	}
	if i < len(pcm) {
		e.held, e.pending = pcm[i], true
	}
	return dst
}

// Decode appends two 16 kHz samples per octet of payload to dst and
// returns them. Every octet is a valid code, so any payload decodes. It
// does not allocate when dst has room for 2·len(payload) more samples.
func (g *G722) Decode(dst []int16, payload []byte) []int16 {
	d := &g.dec
	if d.low.det == 0 {
		d.reset()
	}
	n := len(dst)
	dst = slices.Grow(dst, 2*len(payload))[:n+2*len(payload)]
	o := dst[n:]
	for i, b := range payload {
		o[2*i], o[2*i+1] = d.decodeOctet(b)
	}
	return dst
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// g722Band is the ADPCM state of one sub-band: the adaptive predictor
// (block 4 of the Recommendation) and the quantiser scale factor.
type g722Band struct {
	lower bool // lower band: the scale factor adaptation differs

	nb  int32 // logarithmic scale factor (NBL / NBH)
	det int32 // quantiser scale factor (DETL / DETH)

	s  int32 // predictor output (SL / SH) = sp + sz
	sz int32 // zero-section output (SZL / SZH)

	a [3]int32 // pole coefficients a[1], a[2] (AL1, AL2)
	b [7]int32 // zero coefficients b[1]..b[6] (BL1..BL6)
	d [7]int32 // quantised differences: d[0] now, d[1..6] past (DLT)
	p [3]int32 // partially reconstructed signal: now, 1 and 2 ago (PLT)
	r [3]int32 // reconstructed signal: now, 1 and 2 ago (RLT)
}

func (b *g722Band) reset(lower bool) {
	*b = g722Band{lower: lower}
	if lower {
		b.det = 32
	} else {
		b.det = 8
	}
}

// sat16 limits x to the 16-bit two's complement range.
func sat16(x int32) int32 {
	if x > 32767 {
		return 32767
	}
	if x < -32768 {
		return -32768
	}
	return x
}

// clampInt32 limits x to lo..hi.
func clampInt32(x, lo, hi int32) int32 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// sign16 is the sign bit of a 16-bit value: -1 when negative, else 0.
func sign16(x int32) int32 { return x >> 15 }

// adaptScale updates the scale factor from the code just sent or received:
// LOGSCL and SCALEL for the lower band (code is the 4-bit ILR>>2), LOGSCH
// and SCALEH for the higher band (code is the 2-bit IH).
func (b *g722Band) adaptScale(code int) {
	var limit, shift int32
	nb := b.nb * 127 >> 7 // leakage 127/128
	if b.lower {
		nb += g722WL[g722RL42[code]]
		limit, shift = 18432, 8
	} else {
		nb += g722WH[g722RH2[code]]
		limit, shift = 22528, 10
	}
	b.nb = clampInt32(nb, 0, limit)
	// det is 4·2^(nb/2048 − shift + 11), exponential in nb: bits 6..10
	// of nb index the 32-entry table of 2048·2^(k/32) (the fraction), the
	// bits above shift it (the integer part).
	wd1 := g722ILB[(b.nb>>6)&31]
	wd2 := shift - b.nb>>11
	if wd2 < 0 {
		wd1 <<= -wd2
	} else {
		wd1 >>= wd2
	}
	b.det = wd1 << 2
}

// predict runs block 4 of the Recommendation with the quantised difference
// dq just computed: reconstruction (RECONS, PARREC), the adaptation of the
// pole (UPPOL2, UPPOL1) and zero (UPZERO) coefficients, the delay line
// (DELAYA) and the next prediction (FILTEP, FILTEZ, PREDIC).
func (b *g722Band) predict(dq int32) {
	// RECONS and PARREC.
	b.d[0] = dq
	b.r[0] = sat16(b.s + dq)
	b.p[0] = sat16(b.sz + dq)

	// UPPOL2: second pole coefficient.
	sg0, sg1, sg2 := sign16(b.p[0]), sign16(b.p[1]), sign16(b.p[2])
	wd1 := sat16(b.a[1] << 2)
	wd2 := wd1
	if sg0 == sg1 {
		wd2 = -wd1
	}
	wd2 = min(wd2, 32767)
	wd3 := wd2 >> 7
	if sg0 == sg2 {
		wd3 += 128
	} else {
		wd3 -= 128
	}
	wd3 += b.a[2] * 32512 >> 15
	a2 := clampInt32(wd3, -12288, 12288)

	// UPPOL1: first pole coefficient, kept inside the stability triangle.
	wd1 = -192
	if sg0 == sg1 {
		wd1 = 192
	}
	a1 := sat16(wd1 + b.a[1]*32640>>15)
	lim := sat16(15360 - a2)
	a1 = clampInt32(a1, -lim, lim)

	// UPZERO, DELAYA and FILTEZ in one pass over the zero section.
	// UPZERO: sign-sign adaptation with leakage, ±128 by whether DLT and
	// DLTi (before the shift) agree in sign, none when DLT is 0. The
	// Recommendation limits the sum to 16 bits, but |b·32640>>15| ≤ 32640
	// keeps it in range, so the limiter is left out. DELAYA shifts DLT;
	// FILTEZ then sums BLi·DLTi with the new values, in the same order
	// (i = 6 down to 1) and with the same saturation at every step.
	step := int32(128)
	if dq == 0 {
		step = 0
	}
	sgd := sign16(dq)
	var sz int32
	for i := 6; i > 0; i-- {
		x := sign16(b.d[i]) ^ sgd // 0 when the signs agree, -1 when not
		bi := (step ^ x) - x + b.b[i]*32640>>15
		di := b.d[i-1]
		b.b[i], b.d[i] = bi, di
		sz = sat16(sz + bi*sat16(di+di)>>15)
	}
	b.sz = sz

	// DELAYA (the rest).
	b.r[2], b.r[1] = b.r[1], b.r[0]
	b.p[2], b.p[1] = b.p[1], b.p[0]
	b.a[1], b.a[2] = a1, a2

	// FILTEP: pole section.
	sp := sat16(b.a[1]*sat16(b.r[1]+b.r[1])>>15 + b.a[2]*sat16(b.r[2]+b.r[2])>>15)

	// PREDIC.
	b.s = sat16(sp + sz)
}

// g722Encoder is the transmit QMF and the two band encoders.
type g722Encoder struct {
	low, high g722Band
	x         [24]int32 // QMF input history, oldest first
	held      int16     // odd sample waiting for its pair
	pending   bool
}

func (e *g722Encoder) reset() {
	*e = g722Encoder{}
	e.low.reset(true)
	e.high.reset(false)
}

// encodePair codes two consecutive 16 kHz samples into one octet.
func (e *g722Encoder) encodePair(s0, s1 int16) byte {
	// Transmit QMF: a 24-tap filter pair. xA collects the even taps (the
	// newest sample included), xB the odd ones; their sum is the lower
	// band, their difference the higher band, both at 8 kHz.
	copy(e.x[:22], e.x[2:])
	e.x[22], e.x[23] = int32(s0), int32(s1)
	var xa, xb int32
	for i := 0; i < 12; i++ {
		xa += e.x[23-2*i] * g722QMF[2*i]
		xb += e.x[22-2*i] * g722QMF[2*i+1]
	}
	xl := (xa + xb) >> 14
	xh := (xa - xb) >> 14

	// Lower band: SUBTRA, QUANTL, INVQAL (4-bit, for the predictor),
	// LOGSCL/SCALEL and block 4.
	lo := &e.low
	el := sat16(xl - lo.s)
	ilr := g722QuantL(el, lo.det)
	ril := ilr >> 2
	lo.predict(lo.det * g722QM4[ril] >> 15)
	lo.adaptScale(ril)

	// Higher band: SUBTRA, QUANTH, INVQAH, LOGSCH/SCALEH and block 4.
	hi := &e.high
	eh := sat16(xh - hi.s)
	wd := eh
	if wd < 0 {
		wd = -(wd + 1)
	}
	mih := 1
	if wd >= 564*hi.det>>12 {
		mih = 2
	}
	var ih int
	if eh < 0 {
		ih = g722IHN[mih]
	} else {
		ih = g722IHP[mih]
	}
	hi.predict(hi.det * g722QM2[ih] >> 15)
	hi.adaptScale(ih)

	return byte(ih<<6 | ilr)
}

// g722QuantL is QUANTL: the 6-bit lower-band code for difference el at
// scale factor det. The 30 decision levels per sign are g722Q6·det/4096;
// the magnitude is compared in one's complement, as the Recommendation does.
func g722QuantL(el, det int32) int {
	wd := el
	if wd < 0 {
		wd = -(wd + 1)
	}
	// Smallest mil in 1..29 with wd < level(mil), else 30: binary search
	// over the increasing levels.
	lo, hi := 1, 30
	for lo < hi {
		m := (lo + hi) / 2
		if wd < g722Q6[m]*det>>12 {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if el < 0 {
		return g722ILN[lo]
	}
	return g722ILP[lo]
}

// g722Decoder is the two band decoders and the receive QMF.
type g722Decoder struct {
	low, high g722Band
	x         [24]int32 // receive QMF history (xd and xs interleaved), oldest first
}

func (d *g722Decoder) reset() {
	*d = g722Decoder{}
	d.low.reset(true)
	d.high.reset(false)
}

// decodeOctet decodes one octet into two 16 kHz samples.
func (d *g722Decoder) decodeOctet(c byte) (int16, int16) {
	ilr := int(c & 0x3f)
	ih := int(c >> 6)

	// Lower band: INVQBL (6-bit, for the output), INVQAL (4-bit, for the
	// predictor), RECONS and LIMIT, then the same adaptation as the encoder.
	lo := &d.low
	ril := ilr >> 2
	rl := clampInt32(lo.s+lo.det*g722QM6[ilr]>>15, -16384, 16383)
	lo.predict(lo.det * g722QM4[ril] >> 15)
	lo.adaptScale(ril)

	// Higher band: INVQAH, RECONS and LIMIT, adaptation.
	hi := &d.high
	dh := hi.det * g722QM2[ih] >> 15
	rh := clampInt32(hi.s+dh, -16384, 16383)
	hi.predict(dh)
	hi.adaptScale(ih)

	// Receive QMF: xd = rl-rh feeds the even taps and gives the first
	// output sample, xs = rl+rh the odd taps and the second.
	copy(d.x[:22], d.x[2:])
	d.x[22], d.x[23] = rl+rh, rl-rh
	var x0, x1 int32
	for i := 0; i < 12; i++ {
		x0 += d.x[23-2*i] * g722QMF[2*i]
		x1 += d.x[22-2*i] * g722QMF[2*i+1]
	}
	return int16(sat16(x0 >> 11)), int16(sat16(x1 >> 11))
}

// Tables of the Recommendation.

// g722QMF holds the 24 QMF coefficients h0..h23 scaled by 2^13.
var g722QMF = [24]int32{
	3, -11, -11, 53, 12, -156, 32, 362, -210, -805, 951, 3876,
	3876, 951, -805, -210, 362, 32, -156, 12, 53, -11, -11, 3,
}

// g722Q6 holds the lower-band decision levels (QUANTL), scaled by 2^3
// relative to the scale factor; entry mil is the top of interval mil.
var g722Q6 = [31]int32{
	0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650,
	714, 786, 858, 940, 1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980,
	2195, 2557, 2919, 0,
}

// g722ILN and g722ILP map a lower-band interval to its 6-bit code for a
// negative and a positive difference.
var g722ILN = [31]int{
	0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
	16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4,
}
var g722ILP = [31]int{
	0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45,
	44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
}

// g722QM6 is the 6-bit lower-band inverse quantiser (INVQBL, mode 1),
// g722QM4 the 4-bit one used by the predictor (INVQAL), indexed by code.
var g722QM6 = [64]int32{
	-136, -136, -136, -136, -24808, -21904, -19008, -16704,
	-14984, -13512, -12280, -11192, -10232, -9360, -8576, -7856,
	-7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576,
	-3168, -2776, -2400, -2032, -1688, -1360, -1040, -728,
	24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192,
	10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456,
	4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032,
	1688, 1360, 1040, 728, 432, 136, -432, -136,
}
var g722QM4 = [16]int32{
	0, -20456, -12896, -8968, -6288, -4240, -2584, -1200,
	20456, 12896, 8968, 6288, 4240, 2584, 1200, 0,
}

// g722WL and g722RL42: lower-band scale factor multipliers (LOGSCL) by the
// magnitude class of the 4-bit code.
var g722WL = [8]int32{-60, -30, 58, 172, 334, 538, 1198, 3042}
var g722RL42 = [16]int{0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0}

// g722ILB is 2048·2^(k/32), the fractional part of the scale factor
// (SCALEL, SCALEH).
var g722ILB = [32]int32{
	2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599,
	2656, 2714, 2774, 2834, 2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371,
	3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
}

// Higher band: inverse quantiser (INVQAH), codes (QUANTH) and scale factor
// multipliers (LOGSCH).
var g722QM2 = [4]int32{-7408, -1616, 7408, 1616}
var g722IHN = [3]int{0, 1, 0}
var g722IHP = [3]int{0, 3, 2}
var g722WH = [3]int32{0, -214, 798}
var g722RH2 = [4]int{2, 1, 2, 1}
