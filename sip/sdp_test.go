package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/switchboard-voice/switchboard/media/codec"
)

func sdpBody(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

var sdpHead = []string{"v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"}

func withHead(lines ...string) []byte {
	return sdpBody(append(append([]string{}, sdpHead...), lines...)...)
}

func TestParseSDPChoose(t *testing.T) {
	cases := []struct {
		name     string
		body     []byte
		codec    string
		pt, dtmf uint8
		dir      string
		remote   string
		err      error
	}{
		{"pcmu first", withHead("m=audio 4000 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000"), "PCMU", 0, 101, "sendrecv", "192.0.2.1:4000", nil},
		{"offerer prefers pcma", withHead("m=audio 4000 RTP/AVP 8 0"), "PCMA", 8, 0, "sendrecv", "192.0.2.1:4000", nil},
		{"static pt without rtpmap", withHead("m=audio 4000 RTP/AVP 18 8", "a=rtpmap:18 G729/8000"), "PCMA", 8, 0, "sendrecv", "192.0.2.1:4000", nil},
		{"dynamic pt for pcmu kept", withHead("m=audio 4000 RTP/AVP 96 97", "a=rtpmap:96 PCMU/8000", "a=rtpmap:97 telephone-event/8000"), "PCMU", 96, 97, "sendrecv", "192.0.2.1:4000", nil},
		{"media-level c= wins", withHead("m=audio 4000 RTP/AVP 0", "c=IN IP4 198.51.100.7"), "PCMU", 0, 0, "sendrecv", "198.51.100.7:4000", nil},
		{"sendonly", withHead("m=audio 4000 RTP/AVP 0", "a=sendonly"), "PCMU", 0, 0, "sendonly", "192.0.2.1:4000", nil},
		{"session-level direction", sdpBody("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "a=inactive", "m=audio 4000 RTP/AVP 0"), "PCMU", 0, 0, "inactive", "192.0.2.1:4000", nil},
		{"video first, audio second", withHead("m=video 5000 RTP/AVP 96", "m=audio 4000 RTP/AVP 0"), "PCMU", 0, 0, "sendrecv", "192.0.2.1:4000", nil},
		{"ipv6", sdpBody("v=0", "o=- 1 1 IN IP6 ::1", "s=-", "c=IN IP6 2001:db8::5", "t=0 0", "m=audio 4000 RTP/AVP 0"), "PCMU", 0, 0, "sendrecv", "[2001:db8::5]:4000", nil},
		{"only g729", withHead("m=audio 4000 RTP/AVP 18"), "", 0, 0, "", "", ErrNoCommonCodec},
		{"only srtp", withHead("m=audio 4000 RTP/SAVP 0"), "", 0, 0, "", "", ErrNoCommonCodec},
		{"no connection address", sdpBody("v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "t=0 0", "m=audio 4000 RTP/AVP 0"), "", 0, 0, "", "", ErrBadSDP},
		{"hostname connection address", sdpBody("v=0", "o=- 1 1 IN IP4 x", "s=-", "c=IN IP4 pbx.example.com", "t=0 0", "m=audio 4000 RTP/AVP 0"), "", 0, 0, "", "", ErrBadSDP},
		{"not sdp", []byte("hello"), "", 0, 0, "", "", ErrBadSDP},
		{"payload type out of range", withHead("m=audio 4000 RTP/AVP 300"), "", 0, 0, "", "", ErrBadSDP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseSDP(tc.body)
			if err == nil {
				var c codec.CodecSpec
				var pt uint8
				c, pt, err = o.Choose()
				if err == nil {
					if c.Name != tc.codec || pt != tc.pt || o.DTMFPayloadType != tc.dtmf || o.Direction != tc.dir || o.Remote.String() != tc.remote {
						t.Fatalf("got %s/%d dtmf %d %s %s", c.Name, pt, o.DTMFPayloadType, o.Direction, o.Remote)
					}
				}
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
}

func TestAnswerKeepsMLineOrderAndRejectsOthers(t *testing.T) {
	o, err := ParseSDP(withHead("m=video 5000 RTP/AVP 96", "m=audio 4000 RTP/AVP 8 101", "a=rtpmap:101 telephone-event/8000", "a=sendonly", "m=application 6000 UDP/BFCP *"))
	if err != nil {
		t.Fatal(err)
	}
	spec, pt, _ := o.Choose()
	ans := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{spec}, PTs: []uint8{pt},
		DTMFPT: o.DTMFPayloadType, Direction: ReverseDirection(o.Direction), Answer: o}.Marshal()
	s := string(ans)
	iv, ia, ib := strings.Index(s, "m=video 0 RTP/AVP 96"), strings.Index(s, "m=audio 30000 RTP/AVP 8 101"), strings.Index(s, "m=application 0 UDP/BFCP *")
	if iv < 0 || ia < iv || ib < ia {
		t.Fatalf("m-lines wrong:\n%s", s)
	}
	if !strings.Contains(s, "a=recvonly") || !strings.Contains(s, "a=rtpmap:101 telephone-event/8000") {
		t.Fatalf("direction or telephone-event missing:\n%s", s)
	}
	back, err := ParseSDP(ans)
	if err != nil {
		t.Fatalf("our answer does not parse: %v\n%s", err, s)
	}
	if back.Remote.String() != "127.0.0.1:30000" || back.Direction != "recvonly" || back.DTMFPayloadType != 101 {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestReverseDirection(t *testing.T) {
	for in, want := range map[string]string{"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive", "sendrecv": "sendrecv", "": "sendrecv"} {
		if got := ReverseDirection(in); got != want {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func FuzzParseSDP(f *testing.F) {
	f.Add(withHead("m=audio 4000 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000"))
	f.Add(withHead("m=video 5000 RTP/AVP 96", "m=audio 4000 RTP/AVP 8", "a=sendonly", "a=ptime:30"))
	f.Add([]byte("v=0\r\nm=audio 1 RTP/AVP 0\r\n"))
	f.Add(withHead("m=audio 4000 RTP/SAVP 0 8", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30+"|2^31", "a=crypto:2 AEAD_AES_128_GCM inline:"+key28))
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := ParseSDP(body)
		if err != nil {
			return
		}
		if c, pt, err := o.Choose(); err == nil {
			var crypto []CryptoAttr
			if len(o.Crypto) > 0 {
				crypto = []CryptoAttr{{Tag: o.Crypto[0].Tag, Suite: o.Crypto[0].Suite, Key: newCryptoKey(o.Crypto[0].Suite)}}
			}
			ans := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:1"), Codecs: []codec.CodecSpec{c}, PTs: []uint8{pt}, Crypto: crypto, Answer: o}.Marshal()
			if _, err := ParseSDP(ans); err != nil {
				t.Fatalf("answer to a parsable offer does not parse: %v\n%s", err, ans)
			}
		}
	})
}

// a=rtcp-mux and a=rtcp (RFC 5761, RFC 3605) are read from an offer; an
// answer built with RTCPMux carries a=rtcp-mux, one without does not.
func TestParseSDPRTCPAttributesAndMuxAnswer(t *testing.T) {
	for _, c := range []struct {
		name string
		body []byte
		mux  bool
		rtcp string
	}{
		{"none", withHead("m=audio 4000 RTP/AVP 0"), false, "invalid AddrPort"},
		{"mux", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp-mux"), true, "invalid AddrPort"},
		{"rtcp port", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:4011"), false, "192.0.2.1:4011"},
		{"rtcp port and address", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:53020 IN IP4 198.51.100.9"), false, "198.51.100.9:53020"},
		{"rtcp ipv6 address", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:53020 IN IP6 2001:db8::9"), false, "[2001:db8::9]:53020"},
		{"mux and rtcp on the rtp port", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:4000", "a=rtcp-mux"), true, "192.0.2.1:4000"},
		{"bad rtcp port ignored", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:70000"), false, "invalid AddrPort"},
		{"bad rtcp address ignored", withHead("m=audio 4000 RTP/AVP 0", "a=rtcp:4001 IN IP4 pbx"), false, "invalid AddrPort"},
		{"mux on another m-line only", withHead("m=video 5000 RTP/AVP 96", "a=rtcp-mux", "m=audio 4000 RTP/AVP 0"), false, "invalid AddrPort"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := ParseSDP(c.body)
			if err != nil {
				t.Fatal(err)
			}
			if o.RTCPMux != c.mux || o.RTCP.String() != c.rtcp {
				t.Fatalf("mux %v rtcp %s, want %v %s", o.RTCPMux, o.RTCP, c.mux, c.rtcp)
			}
			spec, pt, _ := o.Choose()
			ans := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{spec}, PTs: []uint8{pt},
				RTCPMux: o.RTCPMux, Answer: o}.Marshal())
			if strings.Contains(ans, "a=rtcp-mux\r\n") != c.mux {
				t.Fatalf("answer's a=rtcp-mux wrong:\n%s", ans)
			}
			back, err := ParseSDP([]byte(ans))
			if err != nil || back.RTCPMux != c.mux || back.RTCP.IsValid() {
				t.Fatalf("answer does not round-trip: %v %+v", err, back)
			}
		})
	}
}

// G.722 is static payload type 9: an offer may omit its rtpmap. Our answer
// names it with the RTP clock rate RFC 3551 gives it (8000, not 16000), and
// our own offer lists it after G.711.
func TestSDPG722(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  []byte
		codec string
		pt    uint8
	}{
		{"pt 9 without rtpmap", withHead("m=audio 4000 RTP/AVP 9 0 101", "a=rtpmap:101 telephone-event/8000"), "G722", 9},
		{"pt 9 with rtpmap", withHead("m=audio 4000 RTP/AVP 9 8", "a=rtpmap:9 G722/8000"), "G722", 9},
		{"G722/16000 from a phone that got the clock wrong", withHead("m=audio 4000 RTP/AVP 9 0", "a=rtpmap:9 G722/16000"), "G722", 9},
		{"offerer prefers pcmu", withHead("m=audio 4000 RTP/AVP 0 9"), "PCMU", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseSDP(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			c, pt, err := o.Choose()
			if err != nil || c.Name != tc.codec || pt != tc.pt {
				t.Fatalf("chose %s/%d (%v), want %s/%d", c.Name, pt, err, tc.codec, tc.pt)
			}
			ans := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{c}, PTs: []uint8{pt}, Answer: o}.Marshal())
			want := fmt.Sprintf("a=rtpmap:%d %s/8000\r\n", pt, tc.codec)
			if !strings.Contains(ans, want) {
				t.Fatalf("answer lacks %q:\n%s", want, ans)
			}
		})
	}
	var pts []uint8
	for _, c := range codec.Codecs() {
		pts = append(pts, c.PayloadType)
	}
	offer := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: codec.Codecs(), PTs: pts, DTMFPT: 101}.Marshal())
	for _, want := range []string{"m=audio 30000 RTP/AVP 0 8 9 ", "a=rtpmap:9 G722/8000\r\n"} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer lacks %q:\n%s", want, offer)
		}
	}
}

// RFC 4733 events run on the audio's RTP clock: with Opus (48 kHz) the
// telephone-event/48000 type is used, with G.711 the /8000 one, whatever
// order they are offered in; Opus without a matching event gets none.
func TestSDPTelephoneEventFollowsCodecClock(t *testing.T) {
	if err := codec.OpusAvailable(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("libopus is required in CI (apt-get install libopus0): %v", err)
		}
		t.Skip(err)
	}
	for _, tc := range []struct {
		name      string
		body      []byte
		codec     string
		pt, dtmf  uint8
		answerHas []string
	}{
		{"opus with both events", withHead("m=audio 4000 RTP/AVP 111 0 101 110", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000", "a=rtpmap:110 telephone-event/48000"),
			"opus", 111, 110, []string{"m=audio 30000 RTP/AVP 111 110\r\n", "a=rtpmap:111 opus/48000/2\r\n", "a=rtpmap:110 telephone-event/48000\r\n"}},
		{"pcmu with both events", withHead("m=audio 4000 RTP/AVP 0 111 110 101", "a=rtpmap:111 opus/48000/2", "a=rtpmap:110 telephone-event/48000", "a=rtpmap:101 telephone-event/8000"),
			"PCMU", 0, 101, []string{"m=audio 30000 RTP/AVP 0 101\r\n", "a=rtpmap:101 telephone-event/8000\r\n"}},
		{"opus with only an 8 kHz event", withHead("m=audio 4000 RTP/AVP 111 101", "a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000"),
			"opus", 111, 0, []string{"m=audio 30000 RTP/AVP 111\r\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseSDP(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			c, pt, err := o.Choose()
			if err != nil || c.Name != tc.codec || pt != tc.pt || o.DTMFPayloadType != tc.dtmf {
				t.Fatalf("chose %s/%d dtmf %d (%v), want %s/%d dtmf %d", c.Name, pt, o.DTMFPayloadType, err, tc.codec, tc.pt, tc.dtmf)
			}
			ans := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{c}, PTs: []uint8{pt}, DTMFPT: o.DTMFPayloadType, Answer: o}.Marshal())
			for _, want := range tc.answerHas {
				if !strings.Contains(ans, want) {
					t.Errorf("answer lacks %q:\n%s", want, ans)
				}
			}
		})
	}
}

// Our offer with G.711 and Opus carries a telephone-event for each clock.
func TestSDPOfferTelephoneEventPerClock(t *testing.T) {
	opus := codec.CodecSpec{Name: "opus", ClockRate: 48000, SampleRate: 48000, Channels: 2, PayloadType: 111}
	pcmu := codec.Codecs()[0]
	offer := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{pcmu, opus}, PTs: []uint8{0, 110}, DTMFPT: 101}.Marshal())
	for _, want := range []string{"m=audio 30000 RTP/AVP 0 110 101 111\r\n", "a=rtpmap:110 opus/48000/2\r\n", "a=rtpmap:101 telephone-event/8000\r\n", "a=rtpmap:111 telephone-event/48000\r\n"} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer lacks %q:\n%s", want, offer)
		}
	}
	// Round trip: a peer that picks Opus from it finds the 48 kHz event.
	back, err := ParseSDP([]byte(strings.Replace(offer, "RTP/AVP 0 110 101 111", "RTP/AVP 110 0 101 111", 1)))
	if err != nil {
		t.Fatalf("our offer does not parse: %v\n%s", err, offer)
	}
	if back.Formats[0].Supported { // opus, when libopus is here
		if back.DTMFPayloadType != 111 {
			t.Errorf("opus-first reading of our offer: dtmf %d, want 111", back.DTMFPayloadType)
		}
	}
	// Same clock everywhere: one event, as before.
	g711 := string(SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: codec.Codecs()[:3], PTs: []uint8{0, 8, 9}, DTMFPT: 101}.Marshal())
	if strings.Count(g711, "telephone-event") != 1 || !strings.Contains(g711, "RTP/AVP 0 8 9 101\r\n") {
		t.Errorf("G.711/G.722 offer:\n%s", g711)
	}
}
