//go:build cgo

package codec

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

// The few libopus entry points we use, declared here so that building
// needs no libopus headers (libopus-dev) and linking no libopus: the
// library is found with dlopen at run time. Signatures as in opus.h.
typedef struct sb_opus_enc sb_opus_enc; // OpusEncoder
typedef struct sb_opus_dec sb_opus_dec; // OpusDecoder

struct sb_opus_api {
	sb_opus_enc *(*enc_create)(int32_t fs, int channels, int application, int *error);
	int32_t (*encode)(sb_opus_enc *st, const int16_t *pcm, int frame_size, unsigned char *data, int32_t max_bytes);
	int (*enc_ctl)(sb_opus_enc *st, int request, ...);
	void (*enc_destroy)(sb_opus_enc *st);
	sb_opus_dec *(*dec_create)(int32_t fs, int channels, int *error);
	int (*decode)(sb_opus_dec *st, const unsigned char *data, int32_t len, int16_t *pcm, int frame_size, int decode_fec);
	int (*dec_get_nb_samples)(const sb_opus_dec *st, const unsigned char *packet, int32_t len);
	void (*dec_destroy)(sb_opus_dec *st);
	const char *(*strerror)(int error);
	const char *(*version)(void);
};

// api is set once, by the first successful sb_opus_load (Go calls it under
// a sync.Once), and only read afterwards.
static struct sb_opus_api api;

// sb_opus_load opens the library and resolves every symbol into a local
// table, published only when all are found; on failure it writes the
// reason to err and returns -1.
static int sb_opus_load(const char *name, char *err, size_t errlen) {
	struct sb_opus_api t;
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(err, errlen, "%s", e ? e : "dlopen failed");
		return -1;
	}
#define SB_SYM(field, sym) \
	*(void **)(&t.field) = dlsym(h, sym); \
	if (t.field == NULL) { snprintf(err, errlen, "%s: symbol %s not found", name, sym); dlclose(h); return -1; }
	SB_SYM(enc_create, "opus_encoder_create");
	SB_SYM(encode, "opus_encode");
	SB_SYM(enc_ctl, "opus_encoder_ctl");
	SB_SYM(enc_destroy, "opus_encoder_destroy");
	SB_SYM(dec_create, "opus_decoder_create");
	SB_SYM(decode, "opus_decode");
	SB_SYM(dec_get_nb_samples, "opus_decoder_get_nb_samples");
	SB_SYM(dec_destroy, "opus_decoder_destroy");
	SB_SYM(strerror, "opus_strerror");
	SB_SYM(version, "opus_get_version_string");
#undef SB_SYM
	api = t;
	return 0; // the handle stays open for the life of the process
}

static sb_opus_enc *sb_enc_create(int32_t fs, int channels, int application, int *error) {
	return api.enc_create(fs, channels, application, error);
}
static int32_t sb_encode(sb_opus_enc *st, const int16_t *pcm, int frame_size, unsigned char *data, int32_t max_bytes) {
	return api.encode(st, pcm, frame_size, data, max_bytes);
}
// sb_enc_set calls one of the OPUS_SET_*(opus_int32) requests.
static int sb_enc_set(sb_opus_enc *st, int request, int32_t value) {
	return api.enc_ctl(st, request, value);
}
static void sb_enc_destroy(sb_opus_enc *st) { api.enc_destroy(st); }
static sb_opus_dec *sb_dec_create(int32_t fs, int channels, int *error) {
	return api.dec_create(fs, channels, error);
}
// sb_decode decodes a packet, or conceals a lost one when data is NULL.
static int sb_decode(sb_opus_dec *st, const unsigned char *data, int32_t len, int16_t *pcm, int frame_size, int decode_fec) {
	return api.decode(st, data, len, pcm, frame_size, decode_fec);
}
static int sb_dec_nb_samples(const sb_opus_dec *st, const unsigned char *packet, int32_t len) {
	return api.dec_get_nb_samples(st, packet, len);
}
static void sb_dec_destroy(sb_opus_dec *st) { api.dec_destroy(st); }
static const char *sb_strerror(int error) { return api.strerror(error); }
static const char *sb_version(void) { return api.version(); }
*/
import "C"

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"
)

// Constants of opus_defines.h.
const (
	opusApplicationVoIP      = 2048
	opusSetBitrate           = 4002
	opusSetComplexity        = 4010
	opusSetInbandFEC         = 4012
	opusSetPacketLossPercent = 4014
)

func loadOpus(name string) error {
	var buf [256]C.char
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	if C.sb_opus_load(cname, &buf[0], C.size_t(len(buf))) != 0 {
		return fmt.Errorf("%w: %s (install the libopus0 package)", errOpusUnavailable, C.GoString(&buf[0]))
	}
	return nil
}

// OpusVersion returns libopus's version string, or "" when it is not loaded.
func OpusVersion() string {
	if OpusAvailable() != nil {
		return ""
	}
	return C.GoString(C.sb_version())
}

func opusError(what string, code C.int) error {
	return fmt.Errorf("codec: opus %s: %s", what, C.GoString(C.sb_strerror(code)))
}

// Opus is one Opus stream: an encoder and a decoder (each created on first
// use, each with its own state) over the system's libopus, at 48 kHz mono.
// Encoding a 20 ms frame costs tens of microseconds of CPU in libopus
// (see docs/BENCHMARKS.md); neither direction allocates Go memory when dst
// has room. Not safe for concurrent use. The C state is freed by Close, or
// when the value is garbage collected.
type Opus struct {
	opts OpusOptions
	st   *opusState
}

type opusState struct {
	enc *C.sb_opus_enc
	dec *C.sb_opus_dec
}

func (s *opusState) free() {
	if s.enc != nil {
		C.sb_enc_destroy(s.enc)
		s.enc = nil
	}
	if s.dec != nil {
		C.sb_dec_destroy(s.dec)
		s.dec = nil
	}
}

// NewOpus returns an Opus codec with the given encoder options, or an
// error when libopus is not available or rejects them.
func NewOpus(opts OpusOptions) (*Opus, error) {
	if err := OpusAvailable(); err != nil {
		return nil, err
	}
	o := &Opus{opts: opts.withDefaults(), st: &opusState{}}
	// Create the decoder now: it is cheap, and failing here beats failing
	// on the media path.
	if err := o.initDecoder(); err != nil {
		return nil, err
	}
	runtime.AddCleanup(o, func(s *opusState) { s.free() }, o.st)
	return o, nil
}

// Close frees the libopus state; the codec must not be used afterwards.
func (o *Opus) Close() { o.st.free() }

func (o *Opus) initDecoder() error {
	var cerr C.int
	d := C.sb_dec_create(48000, 1, &cerr)
	if d == nil || cerr != 0 {
		return opusError("decoder", cerr)
	}
	o.st.dec = d
	return nil
}

func (o *Opus) initEncoder() error {
	var cerr C.int
	e := C.sb_enc_create(48000, 1, opusApplicationVoIP, &cerr)
	if e == nil || cerr != 0 {
		return opusError("encoder", cerr)
	}
	for _, set := range []struct {
		req, val int
		name     string
	}{
		{opusSetBitrate, o.opts.Bitrate, "bitrate"},
		{opusSetComplexity, o.opts.Complexity, "complexity"},
		{opusSetInbandFEC, btoi(o.opts.FEC), "inband FEC"},
		{opusSetPacketLossPercent, o.opts.PacketLossPercent, "packet loss"},
	} {
		if r := C.sb_enc_set(e, C.int(set.req), C.int32_t(set.val)); r != 0 {
			C.sb_enc_destroy(e)
			return opusError("set "+set.name, r)
		}
	}
	o.st.enc = e
	return nil
}

// opusFrameOK reports whether n samples at 48 kHz are a frame size Opus
// can encode (2.5, 5, 10, 20, 40 or 60 ms).
func opusFrameOK(n int) bool {
	switch n {
	case 120, 240, 480, 960, 1920, 2880:
		return true
	}
	return false
}

// Encode appends the Opus packet for pcm (48 kHz mono; 960 samples for the
// engine's 20 ms frames, any Opus frame size works) to dst. A frame of
// another length, or an encoder error, appends nothing. It does not
// allocate when dst has room for 1275 more bytes (the largest packet).
func (o *Opus) Encode(dst []byte, pcm []int16) []byte {
	if !opusFrameOK(len(pcm)) {
		return dst
	}
	if o.st.enc == nil {
		if o.initEncoder() != nil {
			return dst
		}
	}
	n := len(dst)
	dst = slices.Grow(dst, opusMaxPacket)
	room := dst[n:cap(dst)]
	r := C.sb_encode(o.st.enc, (*C.int16_t)(unsafe.Pointer(&pcm[0])), C.int(len(pcm)),
		(*C.uchar)(unsafe.Pointer(&room[0])), C.int32_t(min(len(room), opusMaxPacket)))
	if r < 0 {
		return dst[:n]
	}
	return dst[:n+int(r)]
}

// Decode appends the samples of one Opus packet (2.5 to 120 ms at 48 kHz)
// to dst. An empty payload means a lost packet: 20 ms are concealed (PLC).
// A packet libopus rejects is concealed the same way, so the stream keeps
// its timing. It does not allocate when dst has room for the output.
func (o *Opus) Decode(dst []int16, payload []byte) []int16 {
	if o.st.dec == nil {
		return dst
	}
	if len(payload) == 0 {
		return o.conceal(dst, 960)
	}
	p := (*C.uchar)(unsafe.Pointer(&payload[0]))
	ns := C.sb_dec_nb_samples(o.st.dec, p, C.int32_t(len(payload)))
	if ns <= 0 || ns > opusMaxFrame {
		return o.conceal(dst, 960)
	}
	n := len(dst)
	dst = slices.Grow(dst, int(ns))[:n+int(ns)]
	r := C.sb_decode(o.st.dec, p, C.int32_t(len(payload)), (*C.int16_t)(unsafe.Pointer(&dst[n])), ns, 0)
	if r < 0 {
		return o.conceal(dst[:n], 960)
	}
	return dst[:n+int(r)]
}

// DecodeFEC recovers a lost frame of samples samples (960 for 20 ms) from
// the in-band FEC data of next, the packet after the loss, and appends it
// to dst; when next carries no FEC data libopus conceals instead. Decode
// next itself afterwards as usual.
func (o *Opus) DecodeFEC(dst []int16, next []byte, samples int) []int16 {
	if o.st.dec == nil || samples <= 0 || samples > opusMaxFrame {
		return dst
	}
	if len(next) == 0 {
		return o.conceal(dst, samples)
	}
	n := len(dst)
	dst = slices.Grow(dst, samples)[:n+samples]
	r := C.sb_decode(o.st.dec, (*C.uchar)(unsafe.Pointer(&next[0])), C.int32_t(len(next)),
		(*C.int16_t)(unsafe.Pointer(&dst[n])), C.int(samples), 1)
	if r < 0 {
		return o.conceal(dst[:n], samples)
	}
	return dst[:n+int(r)]
}

// Conceal is the jitter buffer's Concealer hook: libopus's own packet
// loss concealment for a frame that did not arrive.
func (o *Opus) Conceal(dst []int16, samples int) []int16 { return o.conceal(dst, samples) }

// conceal appends samples of packet loss concealment.
func (o *Opus) conceal(dst []int16, samples int) []int16 {
	n := len(dst)
	dst = slices.Grow(dst, samples)[:n+samples]
	r := C.sb_decode(o.st.dec, nil, 0, (*C.int16_t)(unsafe.Pointer(&dst[n])), C.int(samples), 0)
	if r < 0 {
		clear(dst[n:])
		return dst
	}
	return dst[:n+int(r)]
}
