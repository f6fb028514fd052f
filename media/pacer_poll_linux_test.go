//go:build linux

package media

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// Endpoints on a Pacer are read by its pollers (one per four shards,
// round-robin, so a and b sit on different ones): a tone crosses, the
// endpoints hold no reader goroutines, and closing them and the pacer
// leaves no goroutine behind.
func TestPacerPollerCarriesAudio(t *testing.T) {
	base := runtime.NumGoroutine()
	pacer := NewPacer(8)
	if pacer.readers.Len() != 2 {
		t.Fatalf("%d pollers for 8 shards, want 2", pacer.readers.Len())
	}
	pool, err := transport.NewPortPool(24400, 24499)
	if err != nil {
		t.Fatal(err)
	}
	pool.RestTime = time.Millisecond
	ip := netip.MustParseAddr("127.0.0.1")
	a, err := NewEndpoint(pool, ip, EndpointOptions{Pacer: pacer, NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEndpoint(pool, ip, EndpointOptions{Pacer: pacer, NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	spec := codec.Codecs()[0]
	a.Configure(StreamConfig{Codec: spec, PayloadType: 0, Remote: b.LocalAddr()})
	b.Configure(StreamConfig{Codec: spec, PayloadType: 0, Remote: a.LocalAddr()})
	var got capture
	b.SetSink(&got)
	a.Start()
	b.Start()
	if !udpOf(a).Polled() || !udpOf(b).Polled() {
		t.Fatal("endpoints on a pacer are not read by its poller")
	}
	a.Play(sine(1000, time.Second, 0), nil)
	if !waitUntil(t, 3*time.Second, func() bool { s, _ := got.snapshot(); return len(s) >= 4000 }) {
		t.Fatal("no audio through the poller")
	}
	s, _ := got.snapshot()
	if f, _ := dsp.DominantFrequency(s[len(s)-1600:], 8000, 100, 3800, 10); f < 990 || f > 1010 {
		t.Fatalf("heard %.1f Hz", f)
	}
	if st := b.Stats(); st.PacketsIn == 0 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
	a.Close()
	b.Close()
	pacer.Close()
	if !waitUntil(t, 2*time.Second, func() bool { return runtime.NumGoroutine() <= base }) {
		t.Fatalf("goroutines %d after close, baseline %d", runtime.NumGoroutine(), base)
	}
}
