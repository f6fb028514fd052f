package media

import (
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// Endpoints driven by a shared pacer send at 50 packets/s and are heard
// at the right frequency; closing them detaches them from the pacer.
func TestPacerDrivesEndpoints(t *testing.T) {
	pacer := NewPacer(2)
	defer pacer.Close()
	pool, _ := transport.NewPortPool(42500, 42599)
	ip := netip.MustParseAddr("127.0.0.1")
	a, _ := NewEndpoint(pool, ip, EndpointOptions{Pacer: pacer})
	b, _ := NewEndpoint(pool, ip, EndpointOptions{Pacer: pacer, NoIdleSilence: true})
	c := codec.Codecs()[1]
	a.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, Remote: b.LocalAddr()})
	b.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, Remote: a.LocalAddr()})
	var got capture
	b.SetSink(&got)
	a.Start()
	b.Start()
	if pacer.Len() != 2 {
		t.Fatalf("pacer drives %d endpoints, want 2", pacer.Len())
	}
	start := time.Now()
	a.Play(sine(1000, 0, 0), nil)
	if !waitUntil(t, 3*time.Second, func() bool { s, _ := got.snapshot(); return len(s) >= 8000 }) {
		t.Fatal("no audio through pacer-driven endpoints")
	}
	elapsed := time.Since(start)
	s, _ := got.snapshot()
	if f, _ := dsp.DominantFrequency(s[len(s)-1600:], 8000, 100, 3800, 10); f < 990 || f > 1010 {
		t.Fatalf("heard %.0f Hz", f)
	}
	// 1 s of audio must take about 1 s to arrive: the pacer paces.
	if elapsed < 900*time.Millisecond {
		t.Fatalf("1 s of audio arrived in %s: not paced", elapsed)
	}
	a.Close()
	b.Close()
	if pacer.Len() != 0 {
		t.Fatalf("closed endpoints still paced: %d", pacer.Len())
	}
}

// slowSource takes longer than a tick to produce each frame, as a source
// that blocks would.
type slowSource struct{ d time.Duration }

func (s slowSource) ReadFrame(f *Frame) error {
	time.Sleep(s.d)
	f.Samples = f.Samples[:0]
	for range 160 {
		f.Samples = append(f.Samples, 0)
	}
	return nil
}

// A tick that takes longer than 20 ms is counted as an overrun; ticks are
// counted either way.
func TestPacerCountsOverruns(t *testing.T) {
	pacer := NewPacer(1)
	defer pacer.Close()
	if !pacer.LastOverrun().IsZero() {
		t.Fatal("a new pacer reports an overrun")
	}
	pool, _ := transport.NewPortPool(42600, 42699)
	ip := netip.MustParseAddr("127.0.0.1")
	a, _ := NewEndpoint(pool, ip, EndpointOptions{Pacer: pacer})
	defer a.Close()
	c := codec.Codecs()[0]
	a.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
	a.Start()
	if !waitUntil(t, 2*time.Second, func() bool { return pacer.Ticks() >= 5 }) {
		t.Fatalf("pacer ran %d ticks in 2 s", pacer.Ticks())
	}
	before := pacer.Overruns()
	a.Play(slowSource{d: 30 * time.Millisecond}, nil)
	if !waitUntil(t, 3*time.Second, func() bool { return pacer.Overruns()-before >= 5 }) {
		t.Fatalf("a 30 ms source on a 20 ms tick gave %d overruns, want >= 5", pacer.Overruns()-before)
	}
	if last := pacer.LastOverrun(); time.Since(last) > time.Second {
		t.Fatalf("last overrun at %v, want within the last second", last)
	}
}

// A pacer runs one socket poller per four shards, and always one.
func TestPollersFor(t *testing.T) {
	for _, c := range []struct{ shards, want int }{{0, 1}, {1, 1}, {2, 1}, {4, 1}, {5, 2}, {8, 2}, {16, 4}, {64, 16}} {
		if got := pollersFor(c.shards); got != c.want {
			t.Errorf("pollersFor(%d) = %d, want %d", c.shards, got, c.want)
		}
	}
}
