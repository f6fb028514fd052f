package sip

import (
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// SessionSDP.Marshal writes exactly these bodies (the texts were made by
// the earlier fmt-based writer; the appending one must not change a
// byte): plain G.711 with DTMF, IPv6 with Opus (channels) and two
// telephone-events, SRTP with a crypto line, hold with rtcp-mux and a
// 30 ms ptime, a=rtcp naming the RTP port, and an answer that rejects a
// video stream in place.
func TestSessionSDPMarshalExact(t *testing.T) {
	byName := map[string]codec.CodecSpec{}
	for _, c := range codec.Codecs() {
		byName[c.Name] = c
	}
	pcmu, pcma := byName["PCMU"], byName["PCMA"]
	opus, haveOpus := byName["opus"]
	offer, err := ParseSDP([]byte("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
		"m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n" +
		"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 30)
	for i := range key {
		key[i] = byte(i)
	}
	cases := []struct {
		name string
		s    SessionSDP
		want string
	}{
		{"plain", SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40000"), Codecs: []codec.CodecSpec{pcmu, pcma}, PTs: []uint8{0, 8}, DTMFPT: 101, SessionID: 7, Version: 9},
			"v=0\r\no=switchboard 7 9 IN IP4 192.0.2.7\r\ns=switchboard\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
				"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" +
				"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"},
		{"srtp", SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40002"), Codecs: []codec.CodecSpec{pcma}, PTs: []uint8{8}, SessionID: 1, Version: 2,
			Crypto: []CryptoAttr{{Tag: 1, Suite: transport.SRTPAESCM128SHA1_80, Key: key}}},
			"v=0\r\no=switchboard 1 2 IN IP4 192.0.2.7\r\ns=switchboard\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
				"m=audio 40002 RTP/SAVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n" +
				"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n"},
		{"hold, mux, 30 ms", SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40004"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, DTMFPT: 101,
			Direction: "sendonly", RTCPMux: true, PTime: 30 * time.Millisecond, SessionID: 3, Version: 4},
			"v=0\r\no=switchboard 3 4 IN IP4 192.0.2.7\r\ns=switchboard\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
				"m=audio 40004 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n" +
				"a=ptime:30\r\na=sendonly\r\na=rtcp-mux\r\n"},
		{"rtcp on the rtp port", SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40010"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, RTCPOnRTPPort: true, SessionID: 1, Version: 1},
			"v=0\r\no=switchboard 1 1 IN IP4 192.0.2.7\r\ns=switchboard\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
				"m=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp:40010\r\n"},
		{"answer rejecting video", SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40006"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, Answer: offer, SessionID: 5, Version: 6},
			"v=0\r\no=switchboard 5 6 IN IP4 192.0.2.7\r\ns=switchboard\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n" +
				"m=video 0 RTP/AVP 96\r\n" +
				"m=audio 40006 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"},
	}
	if haveOpus {
		cases = append(cases, struct {
			name string
			s    SessionSDP
			want string
		}{"ipv6, opus", SessionSDP{Addr: netip.MustParseAddrPort("[2001:db8::5]:40008"), Codecs: []codec.CodecSpec{opus, pcmu}, PTs: []uint8{111, 0}, DTMFPT: 101, SessionID: 11, Version: 12},
			"v=0\r\no=switchboard 11 12 IN IP6 2001:db8::5\r\ns=switchboard\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n" +
				"m=audio 40008 RTP/AVP 111 0 101 110\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n" +
				"a=rtpmap:101 telephone-event/48000\r\na=fmtp:101 0-16\r\na=rtpmap:110 telephone-event/8000\r\na=fmtp:110 0-16\r\n" +
				"a=ptime:20\r\na=sendrecv\r\n"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(tc.s.Marshal()); got != tc.want {
				t.Fatalf("Marshal:\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func BenchmarkSessionSDPMarshal(b *testing.B) {
	var pcmu codec.CodecSpec
	for _, c := range codec.Codecs() {
		if c.Name == "PCMU" {
			pcmu = c
		}
	}
	s := SessionSDP{Addr: netip.MustParseAddrPort("192.0.2.7:40000"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, DTMFPT: 101}
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Marshal()
	}
}
