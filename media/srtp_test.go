package media

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

var srtpSuites = []transport.SRTPSuite{transport.SRTPAESCM128SHA1_80, transport.SRTPAEADAES128GCM}

func randomKey(t testing.TB, s transport.SRTPSuite) []byte {
	k := make([]byte, s.KeyLen())
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// mirroredKeys returns the keys of two ends of one SRTP stream.
func mirroredKeys(t testing.TB, s transport.SRTPSuite) (a, b *transport.SRTPKeys) {
	k1, k2 := randomKey(t, s), randomKey(t, s)
	return &transport.SRTPKeys{Suite: s, Local: k1, Remote: k2}, &transport.SRTPKeys{Suite: s, Local: k2, Remote: k1}
}

func rtpPacket(seq uint16, payload []byte) []byte {
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x1234}
	b, _ := h.Marshal()
	return append(b, payload...)
}

// Two endpoints with mirrored SDES keys hear each other's tone over
// SRTP; the datagrams on the wire are not plain RTP; an endpoint keyed
// wrongly hears nothing and counts authentication failures.
func TestEndpointSRTPTone(t *testing.T) {
	for _, suite := range srtpSuites {
		t.Run(suite.String(), func(t *testing.T) {
			spec := codec.Codecs()[0]
			a, b := endpointPair(t, spec)
			ka, kb := mirroredKeys(t, suite)
			ca, cb := a.Config(), b.Config()
			ca.SRTP, cb.SRTP = ka, kb
			a.Configure(ca)
			b.Configure(cb)
			var atA, atB capture
			a.SetSink(&atA)
			b.SetSink(&atB)
			a.Start()
			b.Start()
			a.Play(sine(1000, 2*time.Second, 0), nil)
			b.Play(sine(440, 2*time.Second, 0), nil)
			if f := heardFrequency(t, &atB, 4000); f < 990 || f > 1010 {
				t.Errorf("B heard %.0f Hz, want 1000", f)
			}
			if f := heardFrequency(t, &atA, 4000); f < 430 || f > 450 {
				t.Errorf("A heard %.0f Hz, want 440", f)
			}
			if st := b.Stats(); st.SRTPAuthFailures != 0 || st.PacketsIn == 0 {
				t.Errorf("B stats: %d in, %d SRTP failures", st.PacketsIn, st.SRTPAuthFailures)
			}
		})
	}
}

// An endpoint whose remote key is wrong drops every packet as an
// authentication failure and decodes nothing.
func TestEndpointSRTPWrongKeyHearsNothing(t *testing.T) {
	spec := codec.Codecs()[0]
	var logs lockedBuffer
	a, b := endpointPairLog(t, spec, slog.New(slog.NewTextHandler(&logs, nil)))
	ka, kb := mirroredKeys(t, transport.SRTPAESCM128SHA1_80)
	kb.Remote = randomKey(t, transport.SRTPAESCM128SHA1_80)
	ca, cb := a.Config(), b.Config()
	ca.SRTP, cb.SRTP = ka, kb
	a.Configure(ca)
	b.Configure(cb)
	var atB capture
	b.SetSink(&atB)
	a.Start()
	b.Start()
	a.Play(sine(1000, time.Second, 0), nil)
	if !waitUntil(t, 3*time.Second, func() bool { return b.Stats().SRTPAuthFailures >= 10 }) {
		t.Fatalf("B counted %d SRTP failures, want >= 10", b.Stats().SRTPAuthFailures)
	}
	if st := b.Stats(); st.PacketsIn != 0 {
		t.Fatalf("B accepted %d packets with the wrong key", st.PacketsIn)
	}
	s, _ := atB.snapshot()
	if rms := dsp.RMS(s); rms > 50 {
		t.Fatalf("B heard audio (rms %.0f) with the wrong key", rms)
	}
	// Rate-limited: one log line for the whole burst, without key material.
	out := logs.String()
	if n := strings.Count(out, "SRTP packet dropped"); n != 1 {
		t.Fatalf("%d log lines for %d failures, want 1:\n%s", n, b.Stats().SRTPAuthFailures, out)
	}
	if strings.Contains(out, base64.StdEncoding.EncodeToString(kb.Remote)) || strings.Contains(out, base64.StdEncoding.EncodeToString(kb.Local)) {
		t.Fatal("key in the log")
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// What an SRTP endpoint puts on the wire is SRTP: a plain socket sees the
// RTP header but not the payload, and the peer's key opens it.
func TestEndpointSRTPOnTheWire(t *testing.T) {
	pool, err := transport.NewPortPool(42100, 42149)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	e, err := NewEndpoint(pool, ip, EndpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sniff, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sniff.Close()
	ke, kp := mirroredKeys(t, transport.SRTPAESCM128SHA1_80)
	spec := codec.Codecs()[0]
	e.Configure(StreamConfig{Codec: spec, PayloadType: 0, Remote: sniff.LocalAddr().(*net.UDPAddr).AddrPort(), SRTP: ke})
	e.Start() // sends encoded silence
	peer, err := transport.NewSRTPContext(*kp)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for i := 0; i < 5; i++ {
		_ = sniff.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := sniff.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if transport.IsRTCP(buf[:n]) {
			continue
		}
		if n != 12+160+10 {
			t.Fatalf("SRTP packet of %d bytes, want 12+160+10 (80-bit tag)", n)
		}
		silence := bytes.Repeat([]byte{0xff}, 160) // PCMU silence
		if bytes.Contains(buf[12:n], silence[:32]) {
			t.Fatal("payload in the clear")
		}
		plain, err := peer.UnprotectRTP(buf[:n])
		if err != nil {
			t.Fatalf("peer cannot open the packet: %v", err)
		}
		if len(plain) != 12+160 {
			t.Fatalf("decrypted %d bytes", len(plain))
		}
		return
	}
	t.Fatal("no RTP packet seen")
}

// Passthrough between an SRTP leg and a plain or differently keyed leg:
// forwarded packets are decrypted with the source leg's keys and
// re-protected with the destination's, so both phones hear each other.
func TestBridgeSRTPPassthrough(t *testing.T) {
	for _, tc := range []struct {
		name         string
		srtpA, srtpB bool
	}{
		{"srtp to plain", true, false},
		{"plain to srtp", false, true},
		{"srtp to srtp", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pcmu := codec.Codecs()[0]
			x, a, b, y := fourEndpoints(t, pcmu, pcmu)
			key := func(e, peer *Endpoint, suite transport.SRTPSuite) {
				ke, kp := mirroredKeys(t, suite)
				ce, cp := e.Config(), peer.Config()
				ce.SRTP, cp.SRTP = ke, kp
				e.Configure(ce)
				peer.Configure(cp)
			}
			if tc.srtpA {
				key(a, x, transport.SRTPAESCM128SHA1_80)
			}
			if tc.srtpB {
				key(b, y, transport.SRTPAEADAES128GCM)
			}
			unbridge := Bridge(a, b)
			defer unbridge()
			var atX, atY capture
			x.SetSink(&atX)
			y.SetSink(&atY)
			x.Play(sine(440, 2*time.Second, 0), nil)
			y.Play(sine(1000, 2*time.Second, 0), nil)
			if f := heardFrequency(t, &atY, 4000); f < 430 || f > 450 {
				t.Errorf("Y heard %.0f Hz, want 440 from X", f)
			}
			if f := heardFrequency(t, &atX, 4000); f < 990 || f > 1010 {
				t.Errorf("X heard %.0f Hz, want 1000 from Y", f)
			}
			for name, e := range map[string]*Endpoint{"x": x, "a": a, "b": b, "y": y} {
				if n := e.Stats().SRTPAuthFailures; n != 0 {
					t.Errorf("%s: %d SRTP failures", name, n)
				}
			}
		})
	}
}

// The passthrough path with SRTP on both legs (decrypt at the source is
// not part of forwardPacket; re-protecting at the destination is).
func BenchmarkForwardPacketSRTP(b *testing.B) {
	pool, _ := transport.NewPortPool(42150, 42199)
	ip := netip.MustParseAddr("127.0.0.1")
	src, _ := NewEndpoint(pool, ip, EndpointOptions{})
	dst, _ := NewEndpoint(pool, ip, EndpointOptions{})
	defer src.Close()
	defer dst.Close()
	c := codec.Codecs()[0]
	k, _ := mirroredKeys(b, transport.SRTPAESCM128SHA1_80)
	dst.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: src.LocalAddr(), SRTP: k})
	pkt := make([]byte, 12+160)
	h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 7}
	var parsed rtp.Header
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		h.SequenceNumber++
		h.Timestamp += 160
		h.MarshalTo(pkt)
		hl, _ := parsed.Unmarshal(pkt)
		dst.forwardPacket(&parsed, pkt[:hl+160], hl, false)
	}
}

// RTCP on an SRTP stream is SRTCP, on the RTCP port and with rtcp-mux:
// each end accepts the other's reports (RTT measured) and drops none.
func TestEndpointSRTCPReports(t *testing.T) {
	for _, mux := range []bool{false, true} {
		t.Run(fmt.Sprintf("mux=%v", mux), func(t *testing.T) {
			pool, err := transport.NewPortPool(43400, 43449)
			if err != nil {
				t.Fatal(err)
			}
			ip := netip.MustParseAddr("127.0.0.1")
			mk := func() *Endpoint {
				e, err := NewEndpoint(pool, ip, EndpointOptions{RTCPInterval: 20 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { e.Close() })
				return e
			}
			a, b := mk(), mk()
			ka, kb := mirroredKeys(t, transport.SRTPAEADAES128GCM)
			spec := codec.Codecs()[0]
			a.Configure(StreamConfig{Codec: spec, PayloadType: 0, Remote: b.LocalAddr(), RTCPMux: mux, SRTP: ka})
			b.Configure(StreamConfig{Codec: spec, PayloadType: 0, Remote: a.LocalAddr(), RTCPMux: mux, SRTP: kb})
			a.Start()
			b.Start()
			ok := waitUntil(t, 3*time.Second, func() bool {
				sa, sb := a.Stats(), b.Stats()
				return sa.RTCPIn >= 3 && sb.RTCPIn >= 3 && sa.RTTSamples > 0 && sb.RTTSamples > 0
			})
			sa, sb := a.Stats(), b.Stats()
			if !ok {
				t.Fatalf("SRTCP: a in %d (rtt samples %d), b in %d (rtt samples %d)", sa.RTCPIn, sa.RTTSamples, sb.RTCPIn, sb.RTTSamples)
			}
			if sa.RTCPDropped+sb.RTCPDropped+sa.SRTPAuthFailures+sb.SRTPAuthFailures != 0 {
				t.Fatalf("dropped RTCP %d/%d, SRTP failures %d/%d", sa.RTCPDropped, sb.RTCPDropped, sa.SRTPAuthFailures, sb.SRTPAuthFailures)
			}
		})
	}
}
