package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// A gated endpoint sends at most UnverifiedBudget packets (and no RTCP) to
// an address that never proved it wants them, and streams once Verify is
// called. The "victim" socket counts what arrives.
func TestEndpointWithholdsRTPUntilVerified(t *testing.T) {
	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	got := make(chan int, 1024)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, err := victim.Read(buf)
			if err != nil {
				close(got)
				return
			}
			got <- n
		}
	}()
	pool, err := transport.NewPortPool(42700, 42799)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{UnverifiedBudget: 3, RTCPInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	spec := codec.Codecs()[0]
	e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: victim.LocalAddr().(*net.UDPAddr).AddrPort(), RTCPMux: true})
	e.Start() // idle silence: a packet every 20 ms if it were allowed
	if !waitUntil(t, 3*time.Second, func() bool { return e.Stats().Unsent >= 20 }) {
		t.Fatalf("endpoint did not try to send: %+v", e.Stats())
	}
	count := func() (pkts, bytes int) {
		for {
			select {
			case n := <-got:
				pkts++
				bytes += n
			case <-time.After(100 * time.Millisecond):
				return
			}
		}
	}
	if p, b := count(); p > 3 {
		t.Fatalf("unverified address received %d packets (%d bytes), want at most the budget of 3", p, b)
	}
	if e.Verified() {
		t.Fatal("Verified before any proof")
	}
	e.Verify()
	if !waitUntil(t, 3*time.Second, func() bool { return len(got) >= 10 }) {
		t.Fatalf("verified endpoint does not stream: %+v", e.Stats())
	}
}

// Send gating keeps forwarding allocation-free, whether the packet is
// withheld (peer not proven) or sent.
func TestGatedForwardAllocatesNothing(t *testing.T) {
	pool, err := transport.NewPortPool(42800, 42899)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	dst, err := NewEndpoint(pool, ip, EndpointOptions{UnverifiedBudget: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	c := codec.Codecs()[0]
	dst.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: netip.AddrPortFrom(ip, 9)}) // discard port
	pkt := make([]byte, 12+160)
	h := rtp.Header{Version: 2, PayloadType: 0, SSRC: 7}
	var parsed rtp.Header
	forward := func() {
		h.SequenceNumber++
		h.MarshalTo(pkt)
		hl, _ := parsed.Unmarshal(pkt)
		dst.forwardPacket(&parsed, pkt[:hl+160], hl, false)
	}
	for _, verified := range []bool{false, true} {
		if verified {
			dst.Verify()
		}
		if allocs := testing.AllocsPerRun(500, forward); allocs != 0 {
			t.Fatalf("verified=%v: %v allocations per forwarded packet", verified, allocs)
		}
	}
	if st := dst.Stats(); st.Unsent < 490 || st.PacketsOut < 500 { // the budget lets 4 through
		t.Fatalf("withheld %d, sent %d; want ≥490 and ≥500", st.Unsent, st.PacketsOut)
	}
}

// BenchmarkForwardPacketGated is BenchmarkForwardPacket through an endpoint
// with send gating, once the peer is verified (the SIP agent's case).
func BenchmarkForwardPacketGated(b *testing.B) {
	pool, _ := transport.NewPortPool(42900, 42999)
	ip := netip.MustParseAddr("127.0.0.1")
	src, _ := NewEndpoint(pool, ip, EndpointOptions{})
	dst, _ := NewEndpoint(pool, ip, EndpointOptions{UnverifiedBudget: 4})
	defer src.Close()
	defer dst.Close()
	c := codec.Codecs()[0]
	dst.Configure(StreamConfig{Codec: c, PayloadType: 0, Remote: src.LocalAddr()}) // as BenchmarkForwardPacket
	dst.Verify()
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
