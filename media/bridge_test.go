package media

import (
	"math"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// fourEndpoints builds phone X <-> leg A, leg B <-> phone Y, all on loopback.
func fourEndpoints(t *testing.T, legCodecA, legCodecB codec.CodecSpec) (x, a, b, y *Endpoint) {
	t.Helper()
	pool, err := transport.NewPortPool(42200, 42299)
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
	conf := func(e, peer *Endpoint, c codec.CodecSpec) {
		e.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, DTMFPayloadType: 101, Remote: peer.LocalAddr()})
		e.Start()
	}
	conf(x, a, legCodecA)
	conf(a, x, legCodecA)
	conf(b, y, legCodecB)
	conf(y, b, legCodecB)
	return
}

// heardFrequency waits until c holds min 8 kHz samples' worth of audio
// (twice as many at 16 kHz) and returns the dominant frequency of its last
// 200 ms.
func heardFrequency(t *testing.T, c *capture, min int) float64 {
	f, _, _ := heardTone(t, c, min)
	return f
}

// heardTone is heardFrequency that also returns the share of the last
// 200 ms's power found at that frequency (1 = a pure tone) and its RMS.
func heardTone(t *testing.T, c *capture, min int) (freq, share, rms float64) {
	t.Helper()
	enough := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.rate > 0 && len(c.samples) >= min*c.rate/8000
	}
	if !waitUntil(t, 3*time.Second, enough) {
		s, _ := c.snapshot()
		t.Fatalf("heard %d samples, want %d at 8 kHz", len(s), min)
	}
	c.mu.Lock()
	rate := c.rate
	c.mu.Unlock()
	s, _ := c.snapshot()
	last := s[len(s)-rate/5:]
	freq, p := dsp.DominantFrequency(last, rate, 100, 0.475*float64(rate), 10)
	rms = dsp.RMS(last)
	return freq, p / (rms * rms), rms
}

func TestBridgeBothWays(t *testing.T) {
	type pair struct {
		name string
		a, b codec.CodecSpec
	}
	cases := []pair{
		{"passthrough PCMU", codec.Codecs()[0], codec.Codecs()[0]},
		{"transcode PCMU-PCMA", codec.Codecs()[0], codec.Codecs()[1]},
		{"passthrough G722", g722Spec(t), g722Spec(t)},
		{"transcode G722-PCMU", g722Spec(t), codec.Codecs()[0]},
		{"transcode PCMA-G722", codec.Codecs()[1], g722Spec(t)},
	}
	if opus, ok := codec.LookupCodec("opus", 48000); ok {
		cases = append(cases, pair{"transcode opus-PCMU", opus, codec.Codecs()[0]}, pair{"transcode G722-opus", g722Spec(t), opus})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, a, b, y := fourEndpoints(t, tc.a, tc.b)
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
		})
	}
}

func g722Spec(t *testing.T) codec.CodecSpec {
	c, ok := codec.LookupCodec("G722", 8000)
	if !ok {
		t.Fatal("G722 not registered")
	}
	return c
}

// A 16 kHz G.722 leg bridged to an 8 kHz G.711 leg: each side hears the
// other's tone cleanly and at its level, and what the wideband phone sends
// above 4 kHz is filtered out rather than folded into the narrowband leg.
func TestBridgeTranscodesG722ToPCMU(t *testing.T) {
	x, a, b, y := fourEndpoints(t, g722Spec(t), codec.Codecs()[0])
	defer Bridge(a, b)()
	var atX, atY capture
	x.SetSink(&atX)
	y.SetSink(&atY)
	x.Play(sine(1000, 2*time.Second, 0), nil)
	y.Play(sine(440, 2*time.Second, 0), nil)
	want := 8000 / math.Sqrt2
	if f, share, rms := heardTone(t, &atY, 4000); math.Abs(f-1000) > 5 || share < 0.95 || math.Abs(20*math.Log10(rms/want)) > 1 {
		t.Errorf("PCMU phone heard %.0f Hz (%.0f%% of the power, %.1f dB re. sent); want a clean 1000 Hz from the G.722 phone", f, 100*share, 20*math.Log10(rms/want))
	}
	if f, share, rms := heardTone(t, &atX, 4000); math.Abs(f-440) > 5 || share < 0.95 || math.Abs(20*math.Log10(rms/want)) > 1 {
		t.Errorf("G.722 phone heard %.0f Hz (%.0f%% of the power, %.1f dB re. sent); want a clean 440 Hz from the PCMU phone", f, 100*share, 20*math.Log10(rms/want))
	}
	atX.mu.Lock()
	rate := atX.rate
	atX.mu.Unlock()
	if rate != 16000 {
		t.Errorf("G.722 phone decoded %d Hz frames, want 16000", rate)
	}

	// 6 kHz from the wideband side must not reach the narrowband side as
	// its 2 kHz alias.
	var atY2 capture
	y.SetSink(&atY2)
	x.Play(sine(6000, 2*time.Second, 0), nil)
	time.Sleep(200 * time.Millisecond) // let the 1 kHz tone drain from the pipe
	atY2.mu.Lock()
	atY2.samples = atY2.samples[:0]
	atY2.mu.Unlock()
	heardTone(t, &atY2, 4000)
	s, _ := atY2.snapshot()
	if r := dsp.RMS(s[len(s)-1600:]); r > 100 {
		t.Errorf("6 kHz tone from the G.722 phone reached the PCMU phone at RMS %.0f (an alias); want it filtered out", r)
	}
}

func TestBridgeForwardsDTMF(t *testing.T) {
	x, a, b, y := fourEndpoints(t, codec.Codecs()[0], codec.Codecs()[0])
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

// A transcoding bridge (here G.722 to PCMU) re-sends RFC 4733 digits on
// the other leg both ways, and stops when unbridged.
func TestBridgeTranscodingRelaysDTMF(t *testing.T) {
	x, a, b, y := fourEndpoints(t, g722Spec(t), codec.Codecs()[0])
	unbridge := Bridge(a, b)
	var mu sync.Mutex
	var atX, atY []rune
	x.OnDTMF(func(ev DTMFEvent) { mu.Lock(); atX = append(atX, ev.Digit); mu.Unlock() })
	y.OnDTMF(func(ev DTMFEvent) { mu.Lock(); atY = append(atY, ev.Digit); mu.Unlock() })
	for _, d := range "159#" {
		if err := x.SendDTMF(d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range "*0" {
		if err := y.SendDTMF(d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	ok := waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(atY) >= 4 && len(atX) >= 2 })
	mu.Lock()
	if !ok || string(atY) != "159#" || string(atX) != "*0" {
		t.Fatalf("PCMU side got %q (want 159#), G.722 side got %q (want *0)", string(atY), string(atX))
	}
	mu.Unlock()
	unbridge()
	if err := x.SendDTMF('7', 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if string(atY) != "159#" {
		t.Fatalf("digits relayed after unbridge: %q", string(atY))
	}
}

// The passthrough path allocates nothing per packet.
func TestForwardPacketAllocatesNothing(t *testing.T) {
	_, a, b, _ := fourEndpoints(t, codec.Codecs()[0], codec.Codecs()[0])
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
	pool, _ := transport.NewPortPool(42300, 42399)
	ip := netip.MustParseAddr("127.0.0.1")
	src, _ := NewEndpoint(pool, ip, EndpointOptions{})
	dst, _ := NewEndpoint(pool, ip, EndpointOptions{})
	defer src.Close()
	defer dst.Close()
	c := codec.Codecs()[0]
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
