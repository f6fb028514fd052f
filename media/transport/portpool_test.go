package transport

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestPortPoolRestAndExhaustion(t *testing.T) {
	p, err := NewPortPool(24001, 24006) // even ports 24002, 24004, 24006
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }
	ip := netip.MustParseAddr("127.0.0.1")
	var conns []*net.UDPConn
	var ports []int
	for range 3 {
		c, port, err := p.Listen(ip)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		ports = append(ports, port)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if got := map[int]bool{ports[0]: true, ports[1]: true, ports[2]: true}; !got[24002] || !got[24004] || !got[24006] {
		t.Fatalf("ports %v, want 24002, 24004 and 24006 in some order", ports)
	}
	if _, _, err := p.Listen(ip); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("4th port: %v, want ErrNoPorts", err)
	}
	conns[0].Close()
	p.Release(ports[0])
	if _, _, err := p.Listen(ip); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("released port reused before resting: %v", err)
	}
	now = now.Add(3 * time.Second)
	c, port, err := p.Listen(ip)
	if err != nil || port != ports[0] {
		t.Fatalf("rested port not reused: %d %v", port, err)
	}
	conns[0] = c
	if p.InUse() != 3 {
		t.Fatalf("InUse %d", p.InUse())
	}
	if _, err := NewPortPool(10, 4); err == nil {
		t.Fatal("inverted range accepted")
	}
}

func TestPortPoolSkipsPortsTakenByOthers(t *testing.T) {
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 24102})
	if err != nil {
		t.Skip("port 24102 busy")
	}
	defer other.Close()
	p, _ := NewPortPool(24102, 24104)
	c, port, err := p.Listen(netip.MustParseAddr("127.0.0.1"))
	if err != nil || port != 24104 {
		t.Fatalf("got %d %v, want 24104", port, err)
	}
	c.Close()
}

// The fixed ports here are below the kernel's ephemeral range (32768+) and
// outside every range the other test packages use, which run in parallel.

// ListenPair binds the even port and the odd one above it, skips a pair
// whose RTCP half another process holds, keeps port+1 bound while the pair
// is in use, and gives both back with Release.
func TestPortPoolListenPairReservesRTCPPort(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 24203})
	if err != nil {
		t.Skip("port 24203 busy")
	}
	// Two pairs, and 24203 taken: whichever the random start picks,
	// the pair given out is 24204.
	p, _ := NewPortPool(24202, 24204)
	p.RestTime = time.Millisecond
	rtpConn, rtcpConn, port, err := p.ListenPair(ip)
	if err != nil || port != 24204 {
		t.Fatalf("got %d %v, want 24204 (24203 is taken)", port, err)
	}
	if got := rtcpConn.LocalAddr().(*net.UDPAddr).Port; got != port+1 {
		t.Fatalf("RTCP socket on %d", got)
	}
	if _, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1}); err == nil {
		t.Fatal("port+1 was not held by the pair")
	}
	// The skipped pair's RTP half was closed again, not leaked.
	other.Close()
	if c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 24202}); err != nil {
		t.Fatalf("24202 leaked: %v", err)
	} else {
		c.Close()
	}
	rtpConn.Close()
	rtcpConn.Close()
	p.Release(port)
	time.Sleep(5 * time.Millisecond)
	seen := map[int]bool{}
	for range 2 {
		a, b, port, err := p.ListenPair(ip)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		seen[port] = true
	}
	if !seen[24204] || len(seen) != 2 {
		t.Fatalf("pairs after release: %v", seen)
	}
}

// Finding 3 of issue 13: ports of consecutive calls were sequential
// (40646, 40648, ...), so an attacker who saw one call's port could aim
// RTP at the next. Allocation now starts at a random place: over 20
// consecutive allocations from a 500-pair range, at most a few may land
// on the port 2 above the previous one (chance alone gives ~0.04 each;
// round-robin gave 19 of 19).
func TestPortPoolPortsAreNotSequential(t *testing.T) {
	p, err := NewPortPool(25000, 25998)
	if err != nil {
		t.Fatal(err)
	}
	p.RestTime = time.Millisecond
	ip := netip.MustParseAddr("127.0.0.1")
	prev, sequential := -1, 0
	var ports []int
	for range 20 {
		c, port, err := p.Listen(ip)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		p.Release(port)
		if port%2 != 0 || port < 25000 || port > 25998 {
			t.Fatalf("port %d outside the even ports of the range", port)
		}
		if port == prev+2 {
			sequential++
		}
		prev = port
		ports = append(ports, port)
	}
	if sequential > 3 {
		t.Fatalf("%d of 19 consecutive ports were the previous one + 2: %v", sequential, ports)
	}
	t.Logf("ports: %v (%d sequential steps)", ports, sequential)
}

// With KeepSockets a released pair stays bound while it rests, comes
// back (emptied of the strays sent to it meanwhile) once rested, and is
// closed when idle too long or when the pool closes.
func TestPortPoolKeepsSockets(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name      string
		keep      int
		wait      time.Duration // after release, before the next ListenPair
		wantSame  bool          // the same sockets come back
		wantBound bool          // the port is still bound after the wait
	}{
		{"not kept", 0, 3 * time.Second, false, false},
		{"kept, still resting", 4, time.Second, false, true},
		{"kept and rested", 4, 3 * time.Second, true, true},
		{"kept but idle too long", 4, 20 * time.Second, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPortPool(24101, 24104) // pairs 24102/3 and 24104/5
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.KeepSockets = tc.keep
			now := time.Unix(1000, 0)
			p.now = func() time.Time { return now }
			rtp, rtcp, port, err := p.ListenPair(ip)
			if err != nil {
				t.Fatal(err)
			}
			p.ReleasePair(port, rtp, rtcp)
			// A stray for the old call arrives while the port rests.
			if tc.keep > 0 {
				s, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = s.Write([]byte("stray"))
				s.Close()
				time.Sleep(20 * time.Millisecond) // loopback delivery
			}
			now = now.Add(tc.wait)
			p.mu.Lock()
			p.trimLocked(now, 2*time.Second)
			p.mu.Unlock()
			probe, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
			if bound := err != nil; bound != tc.wantBound {
				t.Fatalf("port %d bound after %s: %v, want %v", port, tc.wait, bound, tc.wantBound)
			}
			if probe != nil {
				probe.Close()
			}
			rtp2, rtcp2, port2, err := p.ListenPair(ip)
			if err != nil {
				t.Fatal(err)
			}
			defer p.ReleasePair(port2, rtp2, rtcp2)
			if same := rtp2 == rtp && rtcp2 == rtcp; same != tc.wantSame {
				t.Fatalf("same sockets handed out again: %v, want %v (ports %d, %d)", same, tc.wantSame, port, port2)
			}
			if tc.wantSame {
				_ = rtp2.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if n, _, err := rtp2.ReadFromUDP(make([]byte, 100)); err == nil {
					t.Fatalf("the new call reads the old call's stray (%d bytes)", n)
				}
				_ = rtp2.SetReadDeadline(time.Time{})
			} else if port2 == port && tc.wait < 2*time.Second {
				t.Fatalf("port %d handed out again while resting", port)
			}
		})
	}
	// A pair kept on all interfaces (which reads back as ::) is handed
	// out again for 0.0.0.0.
	any4 := netip.IPv4Unspecified()
	p0, err := NewPortPool(24301, 24302)
	if err != nil {
		t.Fatal(err)
	}
	p0.KeepSockets = 4
	now := time.Unix(1000, 0)
	p0.now = func() time.Time { return now }
	rtp0, rtcp0, port0, err := p0.ListenPair(any4)
	if err != nil {
		t.Fatal(err)
	}
	p0.ReleasePair(port0, rtp0, rtcp0)
	now = now.Add(3 * time.Second)
	rtp1, rtcp1, port1, err := p0.ListenPair(any4)
	if err != nil {
		t.Fatalf("the only pair, kept on 0.0.0.0, not handed out again: %v", err)
	}
	if rtp1 != rtp0 || port1 != port0 {
		t.Fatalf("got a new socket on %d, want the kept one on %d", port1, port0)
	}
	p0.ReleasePair(port1, rtp1, rtcp1)
	p0.Close()

	// Close closes what the pool keeps.
	p, err := NewPortPool(24201, 24202)
	if err != nil {
		t.Fatal(err)
	}
	p.KeepSockets = 4
	rtp, rtcp, port, err := p.ListenPair(ip)
	if err != nil {
		t.Fatal(err)
	}
	p.ReleasePair(port, rtp, rtcp)
	p.Close()
	probe, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		t.Fatalf("port %d still bound after Close: %v", port, err)
	}
	probe.Close()
}
