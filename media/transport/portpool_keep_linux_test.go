//go:build linux

package transport

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// With KeepSockets a released raw pair (a polled transport's) stays bound while it rests, comes
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
			fds, v6, port, err := p.listenRawPair(ip)
			if err != nil {
				t.Fatal(err)
			}
			// Socket identity: descriptor numbers are reused, inodes not.
			ino, inoRTCP := sockIno(t, fds[0]), sockIno(t, fds[1])
			p.releaseRawPair(port, fds, v6, ip)
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
			fds2, v62, port2, err := p.listenRawPair(ip)
			if err != nil {
				t.Fatal(err)
			}
			defer p.releaseRawPair(port2, fds2, v62, ip)
			if same := sockIno(t, fds2[0]) == ino && sockIno(t, fds2[1]) == inoRTCP; same != tc.wantSame {
				t.Fatalf("same sockets handed out again: %v, want %v (ports %d, %d)", same, tc.wantSame, port, port2)
			}
			if tc.wantSame {
				time.Sleep(50 * time.Millisecond)
				if n, _, err := syscall.Recvfrom(fds2[0], make([]byte, 100), syscall.MSG_DONTWAIT); err == nil {
					t.Fatalf("the new call reads the old call's stray (%d bytes)", n)
				}
			} else if port2 == port && tc.wait < 2*time.Second {
				t.Fatalf("port %d handed out again while resting", port)
			}
		})
	}
	// A pair kept on all interfaces is handed out again for 0.0.0.0.
	any4 := netip.IPv4Unspecified()
	p0, err := NewPortPool(24301, 24302)
	if err != nil {
		t.Fatal(err)
	}
	p0.KeepSockets = 4
	now := time.Unix(1000, 0)
	p0.now = func() time.Time { return now }
	fds0, v60, port0, err := p0.listenRawPair(any4)
	if err != nil {
		t.Fatal(err)
	}
	ino0 := sockIno(t, fds0[0])
	p0.releaseRawPair(port0, fds0, v60, any4)
	now = now.Add(3 * time.Second)
	fds1, v61, port1, err := p0.listenRawPair(any4)
	if err != nil {
		t.Fatalf("the only pair, kept on 0.0.0.0, not handed out again: %v", err)
	}
	if sockIno(t, fds1[0]) != ino0 || port1 != port0 {
		t.Fatalf("got a new socket on %d, want the kept one on %d", port1, port0)
	}
	p0.releaseRawPair(port1, fds1, v61, any4)
	p0.Close()

	// Close closes what the pool keeps.
	p, err := NewPortPool(24201, 24202)
	if err != nil {
		t.Fatal(err)
	}
	p.KeepSockets = 4
	fds, v6, port, err := p.listenRawPair(ip)
	if err != nil {
		t.Fatal(err)
	}
	p.releaseRawPair(port, fds, v6, ip)
	p.Close()
	probe, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		t.Fatalf("port %d still bound after Close: %v", port, err)
	}
	probe.Close()
}

// sockIno is the inode of the socket behind fd: its identity.
func sockIno(t *testing.T, fd int) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat %d: %v", fd, err)
	}
	return st.Ino
}
