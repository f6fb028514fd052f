// Package codec holds the audio codecs of the RTP media engine — G.711
// (PCMU, PCMA), G.722 and Opus (the system's libopus, loaded at run time;
// absent without cgo) — behind one Codec interface, and the registry
// (Codecs, LookupCodec) SDP negotiation picks from. Codecs work on plain
// 16-bit PCM slices; package media drives them 20 ms at a time.
package codec

import (
	"slices"
	"strings"
	"sync"
)

// FrameMs is the packetisation interval codecs are driven at: 20 ms,
// the engine's frame (media.FrameDurationMs).
const FrameMs = 20

// Codec turns 20 ms PCM frames into RTP payloads and back. Implementations
// are stateless or hold per-stream state; create one per direction of a
// stream with the factory in CodecSpec.
type Codec interface {
	// Encode appends the payload for one frame at the codec's clock rate to
	// dst and returns it. It must not allocate when dst has capacity.
	Encode(dst []byte, pcm []int16) []byte
	// Decode appends the samples of payload to dst and returns them.
	Decode(dst []int16, payload []byte) []int16
}

// CodecSpec describes a codec as SDP names it, and makes encoder/decoder
// instances of it.
type CodecSpec struct {
	Name        string // SDP encoding name, e.g. "PCMU"
	ClockRate   int    // RTP clock rate
	SampleRate  int    // PCM sample rate of frames handed to Encode / returned by Decode
	Channels    int    // SDP channel count (opus: 2, RFC 7587); frames are always mono
	PayloadType uint8  // static payload type, or the default dynamic one
	New         func() Codec
}

// SamplesPerFrame returns the PCM samples in one 20 ms frame of this codec.
func (c CodecSpec) SamplesPerFrame() int { return c.SampleRate * FrameMs / 1000 }

// TimestampStep returns how far the RTP timestamp advances per 20 ms frame.
func (c CodecSpec) TimestampStep() uint32 { return uint32(c.ClockRate * FrameMs / 1000) }

// Registry of the codecs built into the engine, in preference order. Opus
// follows them when libopus can be loaded (see registry).
var builtinCodecs = []CodecSpec{
	{Name: "PCMU", ClockRate: 8000, SampleRate: 8000, Channels: 1, PayloadType: 0, New: func() Codec { return PCMU{} }},
	{Name: "PCMA", ClockRate: 8000, SampleRate: 8000, Channels: 1, PayloadType: 8, New: func() Codec { return PCMA{} }},
	// G.722 carries 16 kHz audio but its RTP clock is 8000 (RFC 3551).
	{Name: "G722", ClockRate: 8000, SampleRate: 16000, Channels: 1, PayloadType: 9, New: func() Codec { return NewG722() }},
}

// registry returns the codecs the engine supports: the built-in ones, then
// Opus when the system's libopus loaded (the first call tries to load it).
func registry() []CodecSpec { return registryWith(opusLoad()) }

// registryWith is the registry given the outcome of loading libopus.
func registryWith(opusErr error) []CodecSpec {
	if opusErr == nil {
		return opusCodecs()
	}
	return builtinCodecs
}

// opusCodecs is builtinCodecs followed by Opus, built once.
var opusCodecs = sync.OnceValue(func() []CodecSpec {
	return append(builtinCodecs[:len(builtinCodecs):len(builtinCodecs)], opusSpec())
})

// Codecs returns the codecs the engine supports, in default preference
// order: PCMU, PCMA, G722, and opus if libopus is installed
// (OpusAvailable says why not otherwise).
func Codecs() []CodecSpec {
	return slices.Clone(registry())
}

// LookupCodec finds a supported codec by SDP encoding name and clock rate.
func LookupCodec(name string, clockRate int) (CodecSpec, bool) {
	for _, c := range registry() {
		if strings.EqualFold(c.Name, name) && c.ClockRate == clockRate {
			return c, true
		}
	}
	return CodecSpec{}, false
}

// LookupStaticPayloadType finds a supported codec by its static RTP payload
// type (RFC 3551), for SDP offers that omit the rtpmap line.
func LookupStaticPayloadType(pt uint8) (CodecSpec, bool) {
	if pt >= 96 {
		return CodecSpec{}, false
	}
	for _, c := range builtinCodecs { // static types only: Opus has none
		if c.PayloadType == pt {
			return c, true
		}
	}
	return CodecSpec{}, false
}
