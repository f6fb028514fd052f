package transport

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

var srtpSuites = []SRTPSuite{SRTPAESCM128SHA1_80, SRTPAEADAES128GCM}

func randomKey(t testing.TB, s SRTPSuite) []byte {
	k := make([]byte, s.KeyLen())
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// mirroredKeys returns the keys of two ends of one SRTP stream.
func mirroredKeys(t testing.TB, s SRTPSuite) (a, b *SRTPKeys) {
	k1, k2 := randomKey(t, s), randomKey(t, s)
	return &SRTPKeys{Suite: s, Local: k1, Remote: k2}, &SRTPKeys{Suite: s, Local: k2, Remote: k1}
}

func rtpPacket(seq uint16, payload []byte) []byte {
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x1234}
	b, _ := h.Marshal()
	return append(b, payload...)
}

// Packets protected by one end come out of the other identical; tampered,
// replayed and wrongly keyed packets are refused with ErrSRTPAuth.
func TestSRTPRoundTrip(t *testing.T) {
	for _, suite := range srtpSuites {
		t.Run(suite.String(), func(t *testing.T) {
			ka, kb := mirroredKeys(t, suite)
			a, err := NewSRTPContext(*ka)
			if err != nil {
				t.Fatal(err)
			}
			b, err := NewSRTPContext(*kb)
			if err != nil {
				t.Fatal(err)
			}
			protect := func(c *SRTPContext, pkt []byte, isRTCP bool) []byte {
				var out []byte
				f := c.ProtectRTP
				if isRTCP {
					f = c.ProtectRTCP
				}
				if err := f(pkt, func(p []byte) { out = append([]byte(nil), p...) }); err != nil {
					t.Fatal(err)
				}
				return out
			}
			payload := bytes.Repeat([]byte{0xd5, 0x55}, 80)
			plain := rtpPacket(7, payload)
			wire := protect(a, plain, false)
			if bytes.Contains(wire, payload[:16]) {
				t.Fatal("SRTP packet carries the payload in the clear")
			}
			got, err := b.UnprotectRTP(append([]byte(nil), wire...))
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("unprotect: %v, equal=%v", err, bytes.Equal(got, plain))
			}
			if _, err := b.UnprotectRTP(append([]byte(nil), wire...)); !errors.Is(err, ErrSRTPAuth) {
				t.Errorf("replayed packet: err %v, want ErrSRTPAuth", err)
			}
			tampered := protect(a, rtpPacket(8, payload), false)
			tampered[20] ^= 1
			if _, err := b.UnprotectRTP(tampered); !errors.Is(err, ErrSRTPAuth) {
				t.Errorf("tampered packet: err %v, want ErrSRTPAuth", err)
			}
			// The peer's own key does not open what the peer sent to us.
			if _, err := a.UnprotectRTP(protect(a, rtpPacket(9, payload), false)); !errors.Is(err, ErrSRTPAuth) {
				t.Errorf("wrong key: err %v, want ErrSRTPAuth", err)
			}

			rr := &rtcp.ReceiverReport{SSRC: 0x1234}
			rtcpPlain, _ := rr.Marshal()
			rtcpWire := protect(b, rtcpPlain, true)
			got, err = a.UnprotectRTCP(append([]byte(nil), rtcpWire...))
			if err != nil || !bytes.Equal(got, rtcpPlain) {
				t.Fatalf("SRTCP unprotect: %v", err)
			}
			rtcpWire[len(rtcpWire)-1] ^= 1
			if _, err := a.UnprotectRTCP(rtcpWire); !errors.Is(err, ErrSRTPAuth) {
				t.Errorf("tampered SRTCP: err %v, want ErrSRTPAuth", err)
			}
		})
	}
}

func TestSRTPKeysValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys SRTPKeys
		ok   bool
	}{
		{"aes-cm", SRTPKeys{Suite: SRTPAESCM128SHA1_80, Local: make([]byte, 30), Remote: make([]byte, 30)}, true},
		{"gcm", SRTPKeys{Suite: SRTPAEADAES128GCM, Local: make([]byte, 28), Remote: make([]byte, 28)}, true},
		{"gcm with aes-cm length", SRTPKeys{Suite: SRTPAEADAES128GCM, Local: make([]byte, 30), Remote: make([]byte, 30)}, false},
		{"short remote", SRTPKeys{Suite: SRTPAESCM128SHA1_80, Local: make([]byte, 30), Remote: make([]byte, 29)}, false},
		{"no suite", SRTPKeys{Local: make([]byte, 30), Remote: make([]byte, 30)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.keys.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// Keys never reach a log line or a formatted value.
func TestSRTPKeysNeverPrinted(t *testing.T) {
	k, _ := mirroredKeys(t, SRTPAESCM128SHA1_80)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Debug("keys", "keys", *k, "ptr", k)
	cfg := Peer{SRTP: k}
	out := buf.String() + fmt.Sprintf("%v %+v %#v %s %v %+v", *k, *k, *k, *k, cfg, cfg)
	for _, key := range [][]byte{k.Local, k.Remote} {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(key), fmt.Sprintf("%x", key), fmt.Sprint(key)} {
			if strings.Contains(out, enc) {
				t.Fatalf("key material printed: %s", out)
			}
		}
	}
	if !strings.Contains(out, "redacted") {
		t.Fatalf("no redaction marker in %q", out)
	}
}

// Protecting and unprotecting allocate nothing per packet.
func TestSRTPAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("-race makes sync.Pool (used by pion/srtp) drop buffers; run without -race")
	}
	for _, suite := range srtpSuites {
		ka, kb := mirroredKeys(t, suite)
		a, _ := NewSRTPContext(*ka)
		b, _ := NewSRTPContext(*kb)
		plain := rtpPacket(1, make([]byte, 160))
		wire := make([]byte, 0, 1500)
		var seq uint16
		var failed error
		send := func(p []byte) { wire = append(wire[:0], p...) }
		allocs := testing.AllocsPerRun(500, func() {
			seq++
			plain[2], plain[3] = byte(seq>>8), byte(seq)
			if err := a.ProtectRTP(plain, send); err != nil {
				failed = err
			}
			if _, err := b.UnprotectRTP(wire); err != nil {
				failed = err
			}
		})
		if failed != nil {
			t.Fatal(failed)
		}
		if allocs != 0 {
			t.Errorf("%s: %v allocations per protected+unprotected packet", suite, allocs)
		}
	}
}

func BenchmarkSRTP(b *testing.B) {
	for _, suite := range srtpSuites {
		plain := rtpPacket(1, make([]byte, 160))
		wire := make([]byte, 0, 1500)
		send := func(p []byte) { wire = append(wire[:0], p...) }
		contexts := func() (tx, rx *SRTPContext) {
			ka, kb := mirroredKeys(b, suite)
			tx, _ = NewSRTPContext(*ka)
			rx, _ = NewSRTPContext(*kb)
			return tx, rx
		}
		b.Run("protect/"+suite.String(), func(b *testing.B) {
			tx, _ := contexts()
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			var seq uint16
			for b.Loop() {
				seq++
				plain[2], plain[3] = byte(seq>>8), byte(seq)
				if err := tx.ProtectRTP(plain, send); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("protect+unprotect/"+suite.String(), func(b *testing.B) {
			tx, rx := contexts()
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			var seq uint16
			for b.Loop() {
				seq++
				plain[2], plain[3] = byte(seq>>8), byte(seq)
				if err := tx.ProtectRTP(plain, send); err != nil {
					b.Fatal(err)
				}
				if _, err := rx.UnprotectRTP(wire); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Through the SRTP wrapper, a packet that fails authentication never
// reaches the stream and never latches the UDP transport under it, even
// from the peer's IP; the first authentic packet does. What the wrapper
// sends is SRTP the peer's key opens.
func TestSRTPWrapperLatchesOnlyAuthentic(t *testing.T) {
	pool, err := NewPortPool(24800, 24899)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	u, err := NewUDP(pool, ip, UDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSRTP(u, nil)
	defer s.Close()
	ours, theirs := mirroredKeys(t, SRTPAESCM128SHA1_80)
	s.SetPeer(Peer{Remote: netip.AddrPortFrom(ip, 9), RTCPMux: true, SRTP: ours})
	if s.Suite() != SRTPAESCM128SHA1_80 {
		t.Fatalf("suite %v", s.Suite())
	}
	rec := &recorder{accept: true}
	s.Start(rec)
	honest, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	forger, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer honest.Close()
	defer forger.Close()
	peer, err := NewSRTPContext(*theirs)
	if err != nil {
		t.Fatal(err)
	}
	var wire []byte
	if err := peer.ProtectRTP(rtpPacket(1, make([]byte, 160)), func(b []byte) { wire = append(wire[:0], b...) }); err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), wire...)
	forged[len(forged)-1] ^= 0xff // bad tag
	forger.WriteToUDPAddrPort(forged, u.LocalAddr())
	waitFor(t, "the forged packet counted", func() bool { return s.Stats().SRTPAuthFailures == 1 })
	if n, _ := rec.counts(); n != 0 || u.Remote().Port() != 9 {
		t.Fatalf("forged packet: stream got %d, remote %v", n, u.Remote())
	}
	honest.WriteToUDPAddrPort(wire, u.LocalAddr())
	// The stream sees the packet before the transport latches.
	want := honest.LocalAddr().(*net.UDPAddr).AddrPort()
	waitFor(t, "the authentic packet to latch "+want.String(), func() bool {
		n, _ := rec.counts()
		return n == 1 && u.Remote() == want
	})
	rec.mu.Lock()
	got := rec.rtp[0]
	rec.mu.Unlock()
	if len(got) != 12+160 {
		t.Fatalf("stream got %d bytes, want the decrypted 172", len(got))
	}
	if st := s.Stats(); st.Dropped != 1 || st.SRTPAuthFailures != 1 {
		t.Fatalf("stats %+v, want one drop, one auth failure", st)
	}
	// Outbound: protected, and the peer opens it.
	if err := s.WriteRTP(rtpPacket(7, make([]byte, 160))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = honest.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := honest.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != 12+160+10 {
		t.Fatalf("sent %d bytes, want SRTP with an 80-bit tag", n)
	}
	if _, err := peer.UnprotectRTP(buf[:n]); err != nil {
		t.Fatalf("peer cannot open what the wrapper sent: %v", err)
	}
}
