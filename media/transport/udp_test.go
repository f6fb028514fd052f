package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Which first packets may latch a stream (finding 3 of issue 13: RTP from
// anyone, before the phone's first packet, used to capture the call).
func TestUDPMayLatch(t *testing.T) {
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
			e := &UDP{gated: c.gated, natWindow: 10 * time.Second}
			e.peer.Store(&Peer{Remote: c.remote, NATSource: c.natSource})
			e.configuredAt.Store(time.Now().Add(-c.age).UnixNano())
			if got := e.mayLatch(c.from); got != c.want {
				t.Fatalf("mayLatch(%v) = %v, want %v", c.from, got, c.want)
			}
		})
	}
}

// recorder is a Receiver that keeps what it is handed and accepts or
// refuses RTP as told.
type recorder struct {
	mu     sync.Mutex
	accept bool
	rtp    [][]byte
	rtcp   [][]byte
}

func (r *recorder) ReceiveRTP(pkt []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rtp = append(r.rtp, append([]byte(nil), pkt...))
	return r.accept
}

func (r *recorder) ReceiveRTCP(pkt []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rtcp = append(r.rtcp, append([]byte(nil), pkt...))
	return true
}

func (r *recorder) setAccept(v bool) {
	r.mu.Lock()
	r.accept = v
	r.mu.Unlock()
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rtp), len(r.rtcp)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 200 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// The UDP transport latches the first source the stream accepts, and
// only that: a packet the stream refuses (malformed, failed SRTP) from a
// second port of the peer's IP does not take the stream over; after
// latching, packets from other ports are dropped before the stream, RTCP
// (demultiplexed on the RTP port) reaches the stream's RTCP side, and
// RTP goes back to the latched port. Both with a poller and with reader
// goroutines.
func TestUDPLatchesOnlyAcceptedSource(t *testing.T) {
	bothReadings(t, func(t *testing.T, readers *Readers) {
		polled := readers != nil
		pool, err := NewPortPool(24600, 24699)
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr("127.0.0.1")
		u, err := NewUDP(pool, ip, UDPOptions{Readers: readers, UnverifiedBudget: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		phoneA, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		phoneB, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		defer phoneA.Close()
		defer phoneB.Close()
		// The SDP names some other port of the right IP (NAT): either
		// phone may latch.
		u.SetPeer(Peer{Remote: netip.AddrPortFrom(ip, 9), RTCPMux: true})
		rec := &recorder{}
		u.Start(rec)
		if u.Polled() != polled {
			t.Fatalf("Polled() = %v, want %v", u.Polled(), polled)
		}
		rtp := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xff, 0xff}
		to := u.LocalAddr()
		// Refused by the stream: seen, but no latch.
		phoneB.WriteToUDPAddrPort(rtp, to)
		waitFor(t, "the refused packet", func() bool { n, _ := rec.counts(); return n == 1 })
		if u.Remote().Port() != 9 || u.Verified() {
			t.Fatalf("a refused packet latched: remote %v, verified %v", u.Remote(), u.Verified())
		}
		rec.setAccept(true)
		phoneA.WriteToUDPAddrPort(rtp, to)
		wantA := phoneA.LocalAddr().(*net.UDPAddr).AddrPort()
		// The stream sees the packet before the transport latches.
		waitFor(t, "the latching packet to latch "+wantA.String()+" and verify it", func() bool {
			n, _ := rec.counts()
			return n == 2 && u.Remote() == wantA && u.Verified()
		})
		// Now B is a stranger: dropped before the stream.
		phoneB.WriteToUDPAddrPort(rtp, to)
		rtcp := []byte{0x80, 201, 0, 1, 0, 0, 0, 7} // RR, no blocks
		phoneA.WriteToUDPAddrPort(rtcp, to)
		waitFor(t, "the muxed RTCP", func() bool { _, n := rec.counts(); return n == 1 })
		if n, _ := rec.counts(); n != 2 {
			t.Fatalf("stream got %d RTP packets, want 2 (the stranger's dropped)", n)
		}
		waitFor(t, "the stranger counted", func() bool { return u.Stats().Dropped == 1 })
		if err := u.WriteRTP(rtp); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		_ = phoneA.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := phoneA.Read(buf); err != nil || n != len(rtp) {
			t.Fatalf("latched phone read %d bytes, %v", n, err)
		}
	})
}

// bothReadings runs test with a poller reading the transports (readers)
// and with reader goroutines (readers nil), as subtests.
func bothReadings(t *testing.T, test func(t *testing.T, readers *Readers)) {
	for _, polled := range []bool{false, true} {
		t.Run(fmt.Sprintf("polled=%v", polled), func(t *testing.T) {
			var readers *Readers
			if polled {
				if readers = NewReaders(1); readers == nil {
					t.Skip("no poller on this platform")
				}
				defer readers.Close()
			}
			test(t, readers)
		})
	}
}

// A gated transport withholds RTP beyond its budget until verified, and
// says so with ErrWithheld; with no peer it refuses with ErrNoPeer.
func TestUDPSendGating(t *testing.T) {
	pool, err := NewPortPool(24700, 24799)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	u, err := NewUDP(pool, ip, UDPOptions{UnverifiedBudget: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	pkt := make([]byte, 20)
	if err := u.WriteRTP(pkt); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("write without peer: %v, want ErrNoPeer", err)
	}
	u.SetPeer(Peer{Remote: netip.AddrPortFrom(ip, 9)})
	var sent, withheld int
	for range 5 {
		switch err := u.WriteRTP(pkt); {
		case err == nil:
			sent++
		case errors.Is(err, ErrWithheld):
			withheld++
		default:
			t.Fatal(err)
		}
	}
	if sent != 2 || withheld != 3 || u.Stats().Unsent != 3 {
		t.Fatalf("sent %d withheld %d (stats %d), want 2 and 3", sent, withheld, u.Stats().Unsent)
	}
	u.Verify()
	if err := u.WriteRTP(pkt); err != nil {
		t.Fatalf("verified write: %v", err)
	}
	u.SetPeer(Peer{Remote: netip.AddrPortFrom(netip.IPv4Unspecified(), 9)}) // hold
	if err := u.WriteRTCP(pkt); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("RTCP to 0.0.0.0: %v, want ErrNoPeer", err)
	}
}

// With RTCPOnRTPPort the transport binds the RTP port alone (the port
// above stays free for anyone), takes a non-multiplexing peer's RTCP
// there (the peer read our a=rtcp), and sends its own RTCP from the RTP
// port: first to the peer's RTP port + 1, then to where the peer's RTCP
// came from. Both with a poller and with reader goroutines, and for a
// kept port handed to the next call.
func TestUDPRTCPOnRTPPort(t *testing.T) {
	bothReadings(t, func(t *testing.T, readers *Readers) {
		pool, err := NewPortPool(24700, 24701) // one pair: the kept port comes back
		if err != nil {
			t.Fatal(err)
		}
		pool.KeepSockets, pool.RestTime = 4, time.Millisecond
		defer pool.Close()
		ip := netip.MustParseAddr("127.0.0.1")
		for call := range 2 {
			u, err := NewUDP(pool, ip, UDPOptions{Readers: readers, RTCPOnRTPPort: true})
			if err != nil {
				t.Fatalf("call %d: %v", call, err)
			}
			above, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, u.LocalAddr().Port()+1)))
			if err != nil {
				t.Fatalf("call %d: the port above RTP is not free: %v", call, err)
			}
			above.Close()
			rtpPeer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			rtcpPeer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			plus1, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: rtpPeer.LocalAddr().(*net.UDPAddr).Port + 1})
			if err != nil {
				t.Skip("the port above the peer's is taken:", err)
			}
			peerRTP := rtpPeer.LocalAddr().(*net.UDPAddr).AddrPort()
			u.SetPeer(Peer{Remote: peerRTP})
			rec := &recorder{accept: true}
			u.Start(rec)
			rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 7} // RR, no blocks
			read := func(c *net.UDPConn, what string) {
				t.Helper()
				buf := make([]byte, 64)
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil || n != len(rr) {
					t.Fatalf("call %d: %s: read %d bytes, %v", call, what, n, err)
				}
				if from != u.LocalAddr() {
					t.Fatalf("call %d: %s came from %v, want our RTP port %v", call, what, from, u.LocalAddr())
				}
			}
			if err := u.WriteRTCP(rr); err != nil {
				t.Fatal(err)
			}
			read(plus1, "our RTCP before any of the peer's (to its RTP port + 1)")
			rtcpPeer.WriteToUDPAddrPort(rr, u.LocalAddr())
			waitFor(t, "the peer's RTCP on our RTP port", func() bool { _, n := rec.counts(); return n == 1 })
			if err := u.WriteRTCP(rr); err != nil {
				t.Fatal(err)
			}
			read(rtcpPeer, "our RTCP after the peer's (to where it came from)")
			rtp := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xff, 0xff}
			rtpPeer.WriteToUDPAddrPort(rtp, u.LocalAddr())
			waitFor(t, "RTP", func() bool { n, _ := rec.counts(); return n == 1 })
			rtpPeer.Close()
			rtcpPeer.Close()
			plus1.Close()
			u.Close()
			time.Sleep(5 * time.Millisecond) // the port's rest
		}
	})
}
