package media

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// fourEndpoints builds phone X <-> leg A, leg B <-> phone Y, all on loopback.
func fourEndpoints(t *testing.T, legCodecA, legCodecB CodecSpec) (x, a, b, y *Endpoint) {
	t.Helper()
	pool, err := NewPortPool(42200, 42299)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	mk := func() *Endpoint {
		e, err := NewEndpoint(pool, ip, EndpointOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	x, a, b, y = mk(), mk(), mk(), mk()
	conf := func(e, peer *Endpoint, c CodecSpec) {
		e.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, DTMFPayloadType: 101, Remote: peer.LocalAddr()})
		e.Start()
	}
	conf(x, a, legCodecA)
	conf(a, x, legCodecA)
	conf(b, y, legCodecB)
	conf(y, b, legCodecB)
	return
}

func heardFrequency(t *testing.T, c *capture, min int) float64 {
	t.Helper()
	if !waitUntil(t, 3*time.Second, func() bool { s, _ := c.snapshot(); return len(s) >= min }) {
		s, _ := c.snapshot()
		t.Fatalf("heard %d samples, want %d", len(s), min)
	}
	s, _ := c.snapshot()
	f, _ := DominantFrequency(s[len(s)-1600:], 8000, 100, 3800, 10)
	return f
}

func TestBridgeBothWays(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b CodecSpec
	}{
		{"passthrough PCMU", Codecs()[0], Codecs()[0]},
		{"transcode PCMU-PCMA", Codecs()[0], Codecs()[1]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, a, b, y := fourEndpoints(t, tc.a, tc.b)
			unbridge := Bridge(a, b)
			defer unbridge()
			var atX, atY capture
			x.SetSink(&atX)
			y.SetSink(&atY)
			x.Play(NewTone(Tone{Freqs: []float64{440}, Duration: 2 * time.Second}), nil)
			y.Play(NewTone(Tone{Freqs: []float64{1000}, Duration: 2 * time.Second}), nil)
			if f := heardFrequency(t, &atY, 4000); f < 430 || f > 450 {
				t.Errorf("Y heard %.0f Hz, want 440 from X", f)
			}
			if f := heardFrequency(t, &atX, 4000); f < 990 || f > 1010 {
				t.Errorf("X heard %.0f Hz, want 1000 from Y", f)
			}
		})
	}
}

func TestBridgeForwardsDTMF(t *testing.T) {
	x, a, b, y := fourEndpoints(t, Codecs()[0], Codecs()[0])
	defer Bridge(a, b)()
	var mu sync.Mutex
	var atY, atA []rune
	y.OnDTMF(func(ev DTMFEvent) { mu.Lock(); atY = append(atY, ev.Digit); mu.Unlock() })
	a.OnDTMF(func(ev DTMFEvent) { mu.Lock(); atA = append(atA, ev.Digit); mu.Unlock() })
	for _, d := range "159#" {
		if err := x.SendDTMF(d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	ok := waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(atY) >= 4 && len(atA) >= 4 })
	mu.Lock()
	defer mu.Unlock()
	if !ok || string(atY) != "159#" || string(atA) != "159#" {
		t.Fatalf("far end got %q, bridge leg saw %q; want 159#", string(atY), string(atA))
	}
}

// The passthrough path allocates nothing per packet.
func TestForwardPacketAllocatesNothing(t *testing.T) {
	_, a, b, _ := fourEndpoints(t, Codecs()[0], Codecs()[0])
	_ = a
	pkt := make([]byte, 12+160)
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 7}
	n, _ := h.MarshalTo(pkt)
	var parsed rtp.Header
	allocs := testing.AllocsPerRun(1000, func() {
		hl, err := parsed.Unmarshal(pkt)
		if err != nil {
			t.Fatal(err)
		}
		b.forwardPacket(&parsed, pkt[:hl+160], hl, false)
		// restore the header the rewrite replaced
		h.SequenceNumber++
		h.MarshalTo(pkt)
	})
	_ = n
	if allocs != 0 {
		t.Fatalf("%v allocations per forwarded packet", allocs)
	}
}

func BenchmarkForwardPacket(b *testing.B) {
	pool, _ := NewPortPool(42300, 42399)
	ip := netip.MustParseAddr("127.0.0.1")
	src, _ := NewEndpoint(pool, ip, EndpointOptions{})
	dst, _ := NewEndpoint(pool, ip, EndpointOptions{})
	defer src.Close()
	defer dst.Close()
	c := Codecs()[0]
	dst.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: src.LocalAddr()}) // src is not started: packets are discarded by the kernel
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
