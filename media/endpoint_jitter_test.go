package media

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// Packets that reach an endpoint out of order and duplicated are heard by
// its sink in order and once each: the decode path goes through the
// jitter buffer.
func TestEndpointJitterBufferReorders(t *testing.T) {
	pool, err := transport.NewPortPool(42600, 42699)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	e, err := NewEndpoint(pool, ip, EndpointOptions{NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Configure(StreamConfig{Codec: seqSpec, PayloadType: 96, Remote: netip.MustParseAddrPort(peer.LocalAddr().String())})
	var mu sync.Mutex
	var tags []uint16
	e.SetSink(SinkFunc(func(f *Frame) error {
		mu.Lock()
		defer mu.Unlock()
		if f.Samples[0] != 0 { // concealment fades to 0
			tags = append(tags, uint16(f.Samples[0]))
		}
		return nil
	}))
	e.Start()
	to := net.UDPAddrFromAddrPort(e.LocalAddr())
	send := func(i int) {
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i) * 160, SSRC: 99}
		pkt, _ := h.Marshal()
		if _, err := peer.WriteTo(append(pkt, tagPayload(uint16(1000+i))...), to); err != nil {
			t.Fatal(err)
		}
	}
	const n = 50
	// Pairs swapped, every fifth packet sent twice, 40 ms per pair.
	for i := 0; i < n; i += 2 {
		send(i + 1)
		send(i)
		if i%5 == 0 {
			send(i)
		}
		time.Sleep(40 * time.Millisecond)
	}
	if !waitUntil(t, 2*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(tags) > 0 && tags[len(tags)-1] >= 1000+n-2 }) {
		t.Fatalf("sink heard %v", tags)
	}
	mu.Lock()
	defer mu.Unlock()
	// Audio frames come in order, each once; a concealed frame (a faded
	// repeat, if the scheduler delayed a packet past its time) may sit
	// between two, and the buffer may skip a packet to shrink its delay.
	st := e.JitterStats()
	seen := map[uint16]bool{}
	prev := uint16(999)
	for _, tag := range tags {
		if tag < 1000 || tag >= 1000+n {
			continue // a faded repeat
		}
		if seen[tag] {
			continue // the faded repeat of the same frame
		}
		if tag <= prev {
			t.Fatalf("heard %d after %d: %v", tag, prev, tags)
		}
		seen[tag], prev = true, tag
	}
	if len(seen) < n-int(st.Late+st.Skipped)-1 || st.Duplicates == 0 {
		t.Fatalf("heard %d distinct frames of %d; %+v", len(seen), n, st)
	}
	t.Logf("%+v", st)
}
