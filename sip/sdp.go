package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// ErrNoCommonCodec means an SDP offer or answer had no audio codec we can
// encode and decode; an INVITE carrying it is answered 488.
var ErrNoCommonCodec = errors.New("sdp: no common audio codec")

// ErrBadSDP wraps SDP that cannot be parsed or lacks what a call needs; an
// INVITE carrying it is answered 400.
var ErrBadSDP = errors.New("sdp: malformed")

// MediaOffer is the audio part of a remote SDP body, reduced to what the
// engine needs.
type MediaOffer struct {
	// Remote is the RTP address of the peer (connection address + port).
	Remote netip.AddrPort
	// Formats lists the offered payload types in the offerer's order, with
	// the codec each maps to when we support it.
	Formats []OfferedFormat
	// DTMFPayloadType is the offered telephone-event payload type whose
	// clock rate is that of the codec Choose picks (8000 for G.711 and
	// G.722, 48000 for Opus: RFC 4733 events share the audio's RTP clock),
	// or 0 when there is none.
	DTMFPayloadType uint8
	// Direction is the offerer's direction attribute ("sendrecv" if absent).
	Direction string
	// PTime is the offered packetisation time, 0 if absent.
	PTime time.Duration
	// RTCPMux is set by a=rtcp-mux: RTCP shares the RTP port (RFC 5761).
	RTCPMux bool
	// RTCP is the peer's RTCP address from a=rtcp (RFC 3605), zero when
	// absent (RTCP then goes to the RTP port + 1).
	RTCP netip.AddrPort
	// Proto is the audio m-line's transport: "RTP/AVP" or "RTP/AVPF" for
	// plain RTP, "RTP/SAVP" or "RTP/SAVPF" for SRTP.
	Proto string
	// Crypto lists the audio stream's usable SDES a=crypto lines (RFC
	// 4568) in the offerer's order; only SRTP streams have them. Lines
	// we cannot use (unknown suite, MKI, session parameters) are left
	// out, and an SRTP stream with none left is not usable.
	Crypto []CryptoAttr
	// MediaCount is the number of m-lines; AudioIndex is the one we use.
	MediaCount, AudioIndex int
	mediaKinds             []string // per m-line: media name and proto, for rejecting the rest
}

// FramesPerPacket is how many 20 ms frames to put in each packet we send
// to this peer: its a=ptime when that is 40 or 60 ms, else one (20 ms, and
// the a=ptime we answer with says so).
func (o *MediaOffer) FramesPerPacket() int {
	switch o.PTime {
	case 40 * time.Millisecond:
		return 2
	case 60 * time.Millisecond:
		return 3
	}
	return 1
}

// OfferedFormat is one payload type of an m-line.
type OfferedFormat struct {
	PayloadType uint8
	Codec       codec.CodecSpec
	Supported   bool
}

// ParseSDP reads the first usable audio stream of an SDP body.
func ParseSDP(body []byte) (*MediaOffer, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	var sessionAddr netip.Addr
	if sd.ConnectionInformation != nil && sd.ConnectionInformation.Address != nil {
		a, err := parseConnAddr(sd.ConnectionInformation)
		if err != nil {
			return nil, err
		}
		sessionAddr = a
	}
	sessionDir := directionOf(sd.Attributes)
	o := &MediaOffer{MediaCount: len(sd.MediaDescriptions), AudioIndex: -1}
	for i, md := range sd.MediaDescriptions {
		firstFmt := "0"
		if len(md.MediaName.Formats) > 0 {
			firstFmt = md.MediaName.Formats[0]
		}
		o.mediaKinds = append(o.mediaKinds, md.MediaName.Media+" "+strings.Join(md.MediaName.Protos, "/")+" "+firstFmt)
		if o.AudioIndex >= 0 || md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		proto := strings.Join(md.MediaName.Protos, "/")
		secure := proto == "RTP/SAVP" || proto == "RTP/SAVPF"
		if proto != "RTP/AVP" && proto != "RTP/AVPF" && !secure {
			continue // DTLS-SRTP (UDP/TLS/RTP/SAVP) and others are not for SIP legs
		}
		var cryptos []CryptoAttr
		if secure {
			for _, a := range md.Attributes {
				if a.Key != "crypto" {
					continue
				}
				if c, err := parseCrypto(a.Value); err == nil {
					cryptos = append(cryptos, c)
				}
			}
			if len(cryptos) == 0 {
				continue // no key we can use: not a usable stream
			}
		}
		addr := sessionAddr
		if md.ConnectionInformation != nil && md.ConnectionInformation.Address != nil {
			a, err := parseConnAddr(md.ConnectionInformation)
			if err != nil {
				return nil, err
			}
			addr = a
		}
		if !addr.IsValid() {
			return nil, fmt.Errorf("%w: audio stream without connection address", ErrBadSDP)
		}
		if md.MediaName.Port.Value < 0 || md.MediaName.Port.Value > 65535 {
			return nil, fmt.Errorf("%w: port %d", ErrBadSDP, md.MediaName.Port.Value)
		}
		o.AudioIndex = i
		o.Proto, o.Crypto = proto, cryptos
		o.Remote = netip.AddrPortFrom(addr, uint16(md.MediaName.Port.Value))
		o.Direction = directionOf(md.Attributes)
		if o.Direction == "" {
			o.Direction = sessionDir
		}
		if o.Direction == "" {
			o.Direction = "sendrecv"
		}
		rtpmaps := map[uint8][2]string{} // pt -> name, rate
		events := map[int]uint8{}        // telephone-event clock rate -> first pt
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap":
				pt, name, rate, ok := parseRtpmap(a.Value)
				if ok {
					rtpmaps[pt] = [2]string{name, rate}
				}
			case "ptime":
				if ms, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && ms > 0 && ms <= 200 {
					o.PTime = time.Duration(ms) * time.Millisecond
				}
			case "rtcp-mux":
				o.RTCPMux = true
			case "rtcp":
				o.RTCP = parseRTCPAttr(a.Value, addr)
			}
		}
		for _, f := range md.MediaName.Formats {
			n, err := strconv.Atoi(f)
			if err != nil || n < 0 || n > 127 {
				return nil, fmt.Errorf("%w: payload type %q", ErrBadSDP, f)
			}
			pt := uint8(n)
			of := OfferedFormat{PayloadType: pt}
			if m, ok := rtpmaps[pt]; ok {
				rate, _ := strconv.Atoi(strings.SplitN(m[1], "/", 2)[0])
				if strings.EqualFold(m[0], "telephone-event") {
					if _, seen := events[rate]; !seen {
						events[rate] = pt
					}
				} else if c, ok := codec.LookupCodec(m[0], rate); ok {
					of.Codec, of.Supported = c, true
				} else if strings.EqualFold(m[0], "G722") && rate == 16000 {
					// Some phones write G.722's sample rate instead of its
					// RTP clock (RFC 3551 §4.5.2: 8000). It is still G.722;
					// our answer states the correct G722/8000.
					of.Codec, of.Supported = codec.LookupCodec("G722", 8000)
				}
			} else if c, ok := codec.LookupStaticPayloadType(pt); ok {
				of.Codec, of.Supported = c, true
			}
			o.Formats = append(o.Formats, of)
		}
		o.DTMFPayloadType = events[8000]
		for _, f := range o.Formats {
			if f.Supported {
				o.DTMFPayloadType = events[f.Codec.ClockRate]
				break
			}
		}
	}
	if o.AudioIndex < 0 {
		return nil, fmt.Errorf("%w: no RTP/AVP audio stream, nor RTP/SAVP with a crypto suite we support", ErrNoCommonCodec)
	}
	return o, nil
}

func parseConnAddr(ci *sdp.ConnectionInformation) (netip.Addr, error) {
	host := ci.Address.Address
	if i := strings.IndexByte(host, '/'); i >= 0 { // multicast TTL suffix
		host = host[:i]
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: connection address %q is not an IP address", ErrBadSDP, host)
	}
	return a.Unmap(), nil
}

// parseRTCPAttr reads "port" or "port IN IP4 addr" (RFC 3605); a value it
// cannot use gives the zero address, so RTCP falls back to port + 1.
func parseRTCPAttr(v string, mediaAddr netip.Addr) netip.AddrPort {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}
	}
	port, err := strconv.Atoi(f[0])
	if err != nil || port <= 0 || port > 65535 {
		return netip.AddrPort{}
	}
	addr := mediaAddr
	if len(f) == 4 && f[1] == "IN" {
		a, err := netip.ParseAddr(f[3])
		if err != nil {
			return netip.AddrPort{}
		}
		addr = a.Unmap()
	}
	return netip.AddrPortFrom(addr, uint16(port))
}

func parseRtpmap(v string) (pt uint8, name, rate string, ok bool) {
	sp := strings.IndexByte(v, ' ')
	if sp < 0 {
		return 0, "", "", false
	}
	n, err := strconv.Atoi(v[:sp])
	if err != nil || n < 0 || n > 127 {
		return 0, "", "", false
	}
	enc := strings.TrimSpace(v[sp+1:])
	slash := strings.IndexByte(enc, '/')
	if slash < 0 {
		return 0, "", "", false
	}
	return uint8(n), enc[:slash], enc[slash+1:], true
}

func directionOf(attrs []sdp.Attribute) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return ""
}

// Choose picks the codec for the answer: the first offered format we
// support, keeping the offerer's payload type number.
func (o *MediaOffer) Choose() (codec.CodecSpec, uint8, error) {
	for _, f := range o.Formats {
		if f.Supported {
			return f.Codec, f.PayloadType, nil
		}
	}
	return codec.CodecSpec{}, 0, ErrNoCommonCodec
}

// ReverseDirection returns the direction an answerer uses for an offered
// one: sendonly <-> recvonly, inactive stays inactive.
func ReverseDirection(d string) string {
	switch d {
	case "sendonly":
		return "recvonly"
	case "recvonly":
		return "sendonly"
	case "inactive":
		return "inactive"
	}
	return "sendrecv"
}

var sdpVersion atomic.Uint64

// SessionSDP describes our side of a session, to be written as an SDP offer
// or answer.
type SessionSDP struct {
	Addr   netip.AddrPort // our RTP address as the peer must see it
	Codecs []codec.CodecSpec
	PTs    []uint8 // payload type for each codec
	// DTMFPT is the telephone-event payload type (0 = none), written at
	// the clock rate of the first codec. An offer whose codecs also run at
	// the other of 8000 and 48000 Hz (G.711 and Opus) gets a second
	// telephone-event at that rate, on payload type 110 or the next free
	// dynamic one, so DTMF works whichever codec the peer picks.
	DTMFPT    uint8
	Direction string
	// PTime is the packetisation time we ask for (a=ptime); zero means 20
	// ms.
	PTime time.Duration
	// RTCPMux writes a=rtcp-mux: answer it when the offer has it. Without
	// it RTCP is on our RTP port + 1, so no a=rtcp line is needed, unless
	// RTCPOnRTPPort.
	RTCPMux bool
	// RTCPOnRTPPort writes a=rtcp with the RTP port (RFC 3605): we take
	// RTCP there, multiplexed or not (Config.RTCPOnRTPPort).
	RTCPOnRTPPort bool
	// Crypto, when set, makes the stream SRTP: the m-line says RTP/SAVP
	// and each entry becomes an a=crypto line (an answer has exactly one:
	// the offer's tag and suite with our own key).
	Crypto []CryptoAttr
	// Answer, when set, makes the body an answer to this offer: the same
	// number of m-lines in the same order, the ones we do not use rejected
	// with port 0.
	Answer *MediaOffer
	// SessionID and Version form the o= line; zero values are filled in.
	SessionID, Version uint64
}

type telephoneEvent struct {
	pt   uint8
	rate int
}

// telephoneEvents lists the telephone-event formats to write: DTMFPT at
// the first codec's clock rate, and for an offer whose codecs also run at
// the other of 8000/48000 Hz, a second one at that rate.
func (s SessionSDP) telephoneEvents() []telephoneEvent {
	if s.DTMFPT == 0 {
		return nil
	}
	rate := 8000
	if len(s.Codecs) > 0 {
		rate = s.Codecs[0].ClockRate
	}
	out := []telephoneEvent{{s.DTMFPT, rate}}
	if s.Answer != nil {
		return out
	}
	used := func(pt uint8) bool { return pt == s.DTMFPT || slices.Contains(s.PTs, pt) }
	for _, c := range s.Codecs {
		if c.ClockRate == rate || (c.ClockRate != 8000 && c.ClockRate != 48000) {
			continue
		}
		for i := range 32 {
			if pt := uint8(96 + (14+i)%32); !used(pt) { // 110..127, then 96..109
				return append(out, telephoneEvent{pt, c.ClockRate})
			}
		}
		break
	}
	return out
}

// Marshal writes the SDP body.
func (s SessionSDP) Marshal() []byte {
	if s.SessionID == 0 {
		s.SessionID = uint64(time.Now().UnixNano()) & 0x7fffffffffff
	}
	if s.Version == 0 {
		s.Version = sdpVersion.Add(1)
	}
	ipv := "IP4"
	if s.Addr.Addr().Is6() {
		ipv = "IP6"
	}
	// Appended into one buffer (no fmt): an answer is built on every
	// call's setup path.
	b := make([]byte, 0, 512)
	b = append(b, "v=0\r\no=switchboard "...)
	b = strconv.AppendUint(b, s.SessionID, 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, s.Version, 10)
	b = append(b, " IN "...)
	b = append(b, ipv...)
	b = append(b, ' ')
	b = s.Addr.Addr().AppendTo(b)
	b = append(b, "\r\ns=switchboard\r\nc=IN "...)
	b = append(b, ipv...)
	b = append(b, ' ')
	b = s.Addr.Addr().AppendTo(b)
	b = append(b, "\r\nt=0 0\r\n"...)
	audio := func() {
		proto := "RTP/AVP"
		if len(s.Crypto) > 0 {
			proto = "RTP/SAVP"
		}
		b = append(b, "m=audio "...)
		b = strconv.AppendUint(b, uint64(s.Addr.Port()), 10)
		b = append(b, ' ')
		b = append(b, proto...)
		for _, pt := range s.PTs {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(pt), 10)
		}
		events := s.telephoneEvents()
		for _, ev := range events {
			b = append(b, ' ')
			b = strconv.AppendUint(b, uint64(ev.pt), 10)
		}
		b = append(b, "\r\n"...)
		for i, c := range s.Codecs {
			b = append(b, "a=rtpmap:"...)
			b = strconv.AppendUint(b, uint64(s.PTs[i]), 10)
			b = append(b, ' ')
			b = append(b, c.Name...)
			b = append(b, '/')
			b = strconv.AppendInt(b, int64(c.ClockRate), 10)
			if c.Channels > 1 { // opus/48000/2 (RFC 7587)
				b = append(b, '/')
				b = strconv.AppendInt(b, int64(c.Channels), 10)
			}
			b = append(b, "\r\n"...)
		}
		for _, ev := range events {
			b = append(b, "a=rtpmap:"...)
			b = strconv.AppendUint(b, uint64(ev.pt), 10)
			b = append(b, " telephone-event/"...)
			b = strconv.AppendInt(b, int64(ev.rate), 10)
			b = append(b, "\r\na=fmtp:"...)
			b = strconv.AppendUint(b, uint64(ev.pt), 10)
			b = append(b, " 0-16\r\n"...)
		}
		ptime := s.PTime
		if ptime <= 0 {
			ptime = 20 * time.Millisecond
		}
		b = append(b, "a=ptime:"...)
		b = strconv.AppendInt(b, ptime.Milliseconds(), 10)
		b = append(b, "\r\n"...)
		dir := s.Direction
		if dir == "" {
			dir = "sendrecv"
		}
		b = append(b, "a="...)
		b = append(b, dir...)
		b = append(b, "\r\n"...)
		if s.RTCPOnRTPPort {
			b = append(b, "a=rtcp:"...)
			b = strconv.AppendUint(b, uint64(s.Addr.Port()), 10)
			b = append(b, "\r\n"...)
		}
		if s.RTCPMux {
			b = append(b, "a=rtcp-mux\r\n"...)
		}
		for _, c := range s.Crypto {
			b = append(b, "a=crypto:"...)
			b = append(b, c.value()...)
			b = append(b, "\r\n"...)
		}
	}
	if s.Answer == nil {
		audio()
		return b
	}
	for i, kind := range s.Answer.mediaKinds {
		if i == s.Answer.AudioIndex {
			audio()
			continue
		}
		// Reject the streams we do not handle, keeping their position.
		f := strings.SplitN(kind, " ", 3)
		b = append(b, "m="...)
		b = append(b, f[0]...)
		b = append(b, " 0 "...)
		b = append(b, f[1]...)
		b = append(b, ' ')
		b = append(b, f[2]...)
		b = append(b, "\r\n"...)
	}
	return b
}
