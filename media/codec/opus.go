package codec

import (
	"errors"
	"sync"
)

// Opus (RFC 6716) comes from the system's libopus, loaded at run time with
// dlopen("libopus.so.0") the first time the codec registry is consulted
// (see opus_cgo.go and docs/architecture.md for why). Where the library is
// missing, or the binary was built without cgo, Opus is simply not in
// Codecs(): nothing offers or accepts it, and OpusAvailable says why.
//
// In SDP Opus is always "opus/48000/2" (RFC 7587): the RTP clock is 48 kHz
// whatever the audio bandwidth, and "/2" only says the receiver can take
// stereo. The engine's frames are mono at 48 kHz (960 samples per 20 ms);
// stereo packets from the peer are downmixed by libopus.

// OpusPayloadType is the dynamic payload type Opus is offered with.
const OpusPayloadType = 111

// opusMaxFrame is the most samples one Opus packet decodes to at 48 kHz
// (120 ms).
const opusMaxFrame = 5760

// opusMaxPacket is the largest packet Opus produces for one frame.
const opusMaxPacket = 1275

// OpusOptions configures an Opus encoder. The zero value is what the
// codec registry uses.
type OpusOptions struct {
	// Bitrate in bit/s; 0 means 32000 (wideband speech with margin for
	// fullband; RFC 7587 §3.1.1 suggests 16–40 kbit/s for fullband VoIP).
	Bitrate int
	// Complexity 0–10 trades CPU for quality; 0 means 5 (a server encodes
	// many streams; libopus's own default is 10).
	Complexity int
	// FEC turns on in-band forward error correction: each packet also
	// carries a low-rate copy of the previous frame, which DecodeFEC can
	// recover a lost packet from. It costs bitrate only when loss is
	// expected, so PacketLossPercent must be set with it.
	FEC bool
	// PacketLossPercent is the loss rate the encoder prepares for (0–100).
	PacketLossPercent int
}

func (o OpusOptions) withDefaults() OpusOptions {
	if o.Bitrate == 0 {
		o.Bitrate = 32000
	}
	if o.Complexity == 0 {
		o.Complexity = 5
	}
	return o
}

// errOpusUnavailable is wrapped by every error that says Opus cannot be used.
var errOpusUnavailable = errors.New("codec: opus unavailable")

// opusLoad loads libopus once per process (dlopen is process-wide anyway).
var opusLoad = sync.OnceValue(func() error { return loadOpus("libopus.so.0") })

// OpusAvailable reports whether Opus can be used: nil when libopus was
// loaded, otherwise an error saying why (no cgo in this build, or the
// library missing: install the libopus0 package). The first call loads the
// library.
func OpusAvailable() error { return opusLoad() }

// opusSpec is the registry entry for Opus.
func opusSpec() CodecSpec {
	return CodecSpec{Name: "opus", ClockRate: 48000, SampleRate: 48000, Channels: 2, PayloadType: OpusPayloadType,
		New: func() Codec {
			c, err := NewOpus(OpusOptions{})
			if err != nil {
				// Only reachable if libopus fails to allocate a decoder
				// or encoder state; a codec that yields nothing is the
				// safe answer on the media path.
				return nopCodec{}
			}
			return c
		}}
}

// nopCodec encodes and decodes nothing.
type nopCodec struct{}

func (nopCodec) Encode(dst []byte, _ []int16) []byte  { return dst }
func (nopCodec) Decode(dst []int16, _ []byte) []int16 { return dst }
