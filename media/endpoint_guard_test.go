package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// Which first packets may latch a stream (finding 3 of issue 13: RTP from
// anyone, before the phone's first packet, used to capture the call).
func TestEndpointMayLatch(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		name      string
		gated     bool
		remote    netip.AddrPort
		natSource netip.Addr
		age       time.Duration // since Configure
		from      netip.AddrPort
		want      bool
	}{
		{"SDP address", true, ap("192.0.2.10:4000"), netip.Addr{}, 0, ap("192.0.2.10:4000"), true},
		{"SDP IP, other port (NAT)", true, ap("192.0.2.10:4000"), netip.Addr{}, 0, ap("192.0.2.10:61000"), true},
		{"stranger", true, ap("192.0.2.10:4000"), netip.Addr{}, 0, ap("198.51.100.7:4000"), false},
		{"stranger, public SDP, signaling IP", true, ap("192.0.2.10:4000"), netip.MustParseAddr("198.51.100.7"), 0, ap("198.51.100.7:4000"), false},
		{"private SDP, signaling IP, in window", true, ap("192.168.1.20:4000"), netip.MustParseAddr("198.51.100.7"), time.Second, ap("198.51.100.7:31000"), true},
		{"private SDP, signaling IP, too late", true, ap("192.168.1.20:4000"), netip.MustParseAddr("198.51.100.7"), 11 * time.Second, ap("198.51.100.7:31000"), false},
		{"private SDP, other IP", true, ap("10.1.2.3:4000"), netip.MustParseAddr("198.51.100.7"), 0, ap("203.0.113.5:4000"), false},
		{"CGNAT SDP, signaling IP", true, ap("100.64.1.2:4000"), netip.MustParseAddr("198.51.100.7"), 0, ap("198.51.100.7:4000"), true},
		{"hold address 0.0.0.0", true, ap("0.0.0.0:4000"), netip.Addr{}, 0, ap("198.51.100.7:4000"), false},
		{"gated, no remote", true, netip.AddrPort{}, netip.Addr{}, 0, ap("198.51.100.7:4000"), false},
		{"ungated, no remote (in-process peers)", false, netip.AddrPort{}, netip.Addr{}, 0, ap("198.51.100.7:4000"), true},
		{"ungated, stranger", false, ap("192.0.2.10:4000"), netip.Addr{}, 0, ap("198.51.100.7:4000"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &Endpoint{gated: c.gated, natWindow: 10 * time.Second}
			e.cfg.Store(&StreamConfig{Remote: c.remote, NATSource: c.natSource})
			e.configuredAt.Store(time.Now().Add(-c.age).UnixNano())
			if got := e.mayLatch(c.from); got != c.want {
				t.Fatalf("mayLatch(%v) = %v, want %v", c.from, got, c.want)
			}
		})
	}
}

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
	pool, err := NewPortPool(42700, 42799)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{UnverifiedBudget: 3, RTCPInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	spec := Codecs()[0]
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
	pool, err := NewPortPool(42800, 42899)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	dst, err := NewEndpoint(pool, ip, EndpointOptions{UnverifiedBudget: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	c := Codecs()[0]
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
	pool, _ := NewPortPool(42900, 42999)
	ip := netip.MustParseAddr("127.0.0.1")
	src, _ := NewEndpoint(pool, ip, EndpointOptions{})
	dst, _ := NewEndpoint(pool, ip, EndpointOptions{UnverifiedBudget: 4})
	defer src.Close()
	defer dst.Close()
	c := Codecs()[0]
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
