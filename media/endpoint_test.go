package media

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

type capture struct {
	mu      sync.Mutex
	samples []int16
	rate    int
	digits  []rune
}

func (c *capture) WriteFrame(f *Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rate = f.Rate
	c.samples = append(c.samples, f.Samples...)
	return nil
}

func (c *capture) snapshot() ([]int16, []rune) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int16(nil), c.samples...), append([]rune(nil), c.digits...)
}

func endpointPair(t *testing.T, spec codec.CodecSpec) (a, b *Endpoint) {
	t.Helper()
	return endpointPairLog(t, spec, nil)
}

// endpointPairLog is endpointPair with b logging to logB.
func endpointPairLog(t *testing.T, spec codec.CodecSpec, logB *slog.Logger) (a, b *Endpoint) {
	t.Helper()
	pool, err := transport.NewPortPool(42000, 42099)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	a, err = NewEndpoint(pool, ip, EndpointOptions{NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err = NewEndpoint(pool, ip, EndpointOptions{NoIdleSilence: true, Logger: logB})
	if err != nil {
		t.Fatal(err)
	}
	a.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101, Remote: b.LocalAddr()})
	b.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101, Remote: a.LocalAddr()})
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) bool {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// A tone played on one endpoint is heard at the right frequency on the
// other, for every registered codec, and playback reports its end.
func TestEndpointToneAcrossLoopback(t *testing.T) {
	for _, spec := range codec.Codecs() {
		t.Run(spec.Name, func(t *testing.T) {
			a, b := endpointPair(t, spec)
			var got capture
			b.SetSink(&got)
			a.Start()
			b.Start()
			done := make(chan error, 1)
			a.Play(sine(1000, 400*time.Millisecond, 0), func(err error) { done <- err })
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("playback ended with %v", err)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("playback did not end")
			}
			want := 3000 * spec.SampleRate / 8000 // 375 ms
			if !waitUntil(t, time.Second, func() bool { s, _ := got.snapshot(); return len(s) >= want }) {
				s, _ := got.snapshot()
				t.Fatalf("heard %d samples, want ≥ %d", len(s), want)
			}
			s, _ := got.snapshot()
			got.mu.Lock()
			rate := got.rate
			got.mu.Unlock()
			if rate != spec.SampleRate {
				t.Fatalf("heard %d Hz frames, want %d", rate, spec.SampleRate)
			}
			f, _ := dsp.DominantFrequency(s[rate/10:], rate, 100, 0.45*float64(rate), 10)
			if f < 990 || f > 1010 {
				t.Fatalf("heard %.1f Hz, want 1000", f)
			}
			if st := a.Stats(); st.PacketsOut < 18 || st.PacketsOut > 22 {
				t.Fatalf("sent %d packets for 400 ms", st.PacketsOut)
			}
		})
	}
}

func TestEndpointRFC4733DTMF(t *testing.T) {
	a, b := endpointPair(t, codec.Codecs()[0])
	var mu sync.Mutex
	var digits []rune
	b.OnDTMF(func(ev DTMFEvent) {
		mu.Lock()
		digits = append(digits, ev.Digit)
		mu.Unlock()
	})
	a.Start()
	b.Start()
	want := "0123456789*#ABCD"
	for _, d := range want {
		if err := a.SendDTMF(d, 60*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	ok := waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(digits) >= len(want) })
	mu.Lock()
	defer mu.Unlock()
	if !ok || string(digits) != want {
		t.Fatalf("received %q, want %q", string(digits), want)
	}
}

// Without RFC 4733 the peer's digits are found in the audio, also on
// wideband legs (the detector gets a downsampled copy).
func TestEndpointInbandDTMFWideband(t *testing.T) {
	for _, spec := range codec.Codecs() {
		if spec.SampleRate == 8000 {
			continue // covered by the DTMF detector tests
		}
		t.Run(spec.Name, func(t *testing.T) {
			a, b := endpointPair(t, spec)
			b.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: a.LocalAddr()})
			var mu sync.Mutex
			var digits []rune
			var sources []string
			b.OnDTMF(func(ev DTMFEvent) {
				mu.Lock()
				digits = append(digits, ev.Digit)
				sources = append(sources, ev.Source)
				mu.Unlock()
			})
			a.Start()
			b.Start()
			const want = "159#"
			var tones []Source
			for _, d := range want {
				s, _ := dtmfTone(d, 100*time.Millisecond, 100*time.Millisecond)
				tones = append(tones, s)
			}
			a.Play(Sequence(tones...), nil)
			ok := waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(digits) >= len(want) })
			mu.Lock()
			defer mu.Unlock()
			if !ok || string(digits) != want || sources[0] != "inband" {
				t.Fatalf("detected %q from %v, want %q in-band", string(digits), sources, want)
			}
		})
	}
}

// After latching onto the peer, packets from anyone else are dropped.
func TestEndpointSymmetricRTPLatch(t *testing.T) {
	a, b := endpointPair(t, codec.Codecs()[0])
	var got capture
	b.SetSink(&got)
	a.Start()
	b.Start()
	a.Play(sine(440, 200*time.Millisecond, 0), nil)
	if !waitUntil(t, 2*time.Second, func() bool { return b.Stats().PacketsIn > 3 }) {
		t.Fatal("no packets")
	}
	intruder, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer intruder.Close()
	pkt := []byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9}
	pkt = append(pkt, make([]byte, 160)...)
	before := b.Stats().Dropped
	for range 5 {
		intruder.WriteTo(pkt, net.UDPAddrFromAddrPort(b.LocalAddr()))
	}
	if !waitUntil(t, 2*time.Second, func() bool { return b.Stats().Dropped >= before+5 }) {
		t.Fatalf("intruder packets not dropped: %+v", b.Stats())
	}
	// Garbage is dropped too and does not stop the endpoint.
	intruder.WriteTo([]byte{1, 2, 3}, net.UDPAddrFromAddrPort(b.LocalAddr()))
	a.Play(sine(440, 100*time.Millisecond, 0), nil)
	n := b.Stats().PacketsIn
	if !waitUntil(t, 2*time.Second, func() bool { return b.Stats().PacketsIn > n+2 }) {
		t.Fatal("endpoint stopped receiving after bad input")
	}
}

func TestEndpointCloseEndsPlaybackAndIsIdempotent(t *testing.T) {
	a, _ := endpointPair(t, codec.Codecs()[0])
	a.Start()
	done := make(chan error, 1)
	a.Play(sine(440, 0, 0), func(err error) { done <- err })
	a.Close()
	a.Close()
	select {
	case err := <-done:
		if err != ErrClosed {
			t.Fatalf("playback ended with %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("playback not ended by Close")
	}
	stopped := make(chan error, 1)
	a.Play(sine(440, 0, 0), func(err error) { stopped <- err })
	if err := <-stopped; err != ErrClosed {
		t.Fatalf("play after close: %v", err)
	}
}

// An answered stream with nothing to play sends silence every 20 ms; on
// hold (recvonly) it sends nothing.
func TestEndpointIdleSendsSilence(t *testing.T) {
	pool, _ := transport.NewPortPool(42400, 42499)
	ip := netip.MustParseAddr("127.0.0.1")
	a, _ := NewEndpoint(pool, ip, EndpointOptions{})
	b, _ := NewEndpoint(pool, ip, EndpointOptions{NoIdleSilence: true})
	defer a.Close()
	defer b.Close()
	c := codec.Codecs()[0]
	a.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: b.LocalAddr()})
	b.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: a.LocalAddr()})
	var got capture
	b.SetSink(&got)
	a.Start()
	b.Start()
	if !waitUntil(t, 2*time.Second, func() bool { s, _ := got.snapshot(); return len(s) >= 1600 }) {
		t.Fatal("idle endpoint sent no silence")
	}
	s, _ := got.snapshot()
	if dsp.RMS(s) != 0 {
		t.Fatalf("idle audio is not silent: rms %.1f", dsp.RMS(s))
	}
	a.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: b.LocalAddr(), Direction: "recvonly"})
	time.Sleep(60 * time.Millisecond)
	n := a.Stats().PacketsOut
	time.Sleep(200 * time.Millisecond)
	if d := a.Stats().PacketsOut - n; d > 0 {
		t.Fatalf("recvonly endpoint sent %d packets", d)
	}
}
