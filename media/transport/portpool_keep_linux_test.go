//go:build linux

package transport

import (
	"net"
	"net/netip"
	"sync"
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
			fds, v6, port, _, err := p.listenRawPair(ip, true)
			if err != nil {
				t.Fatal(err)
			}
			// Socket identity: descriptor numbers are reused, inodes not.
			ino, inoRTCP := sockIno(t, fds[0]), sockIno(t, fds[1])
			p.releaseRawPair(port, fds, v6, ip, nil)
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
			fds2, v62, port2, _, err := p.listenRawPair(ip, true)
			if err != nil {
				t.Fatal(err)
			}
			defer p.releaseRawPair(port2, fds2, v62, ip, nil)
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
	fds0, v60, port0, _, err := p0.listenRawPair(any4, true)
	if err != nil {
		t.Fatal(err)
	}
	ino0 := sockIno(t, fds0[0])
	p0.releaseRawPair(port0, fds0, v60, any4, nil)
	now = now.Add(3 * time.Second)
	fds1, v61, port1, _, err := p0.listenRawPair(any4, true)
	if err != nil {
		t.Fatalf("the only pair, kept on 0.0.0.0, not handed out again: %v", err)
	}
	if sockIno(t, fds1[0]) != ino0 || port1 != port0 {
		t.Fatalf("got a new socket on %d, want the kept one on %d", port1, port0)
	}
	p0.releaseRawPair(port1, fds1, v61, any4, nil)
	p0.Close()

	// Close closes what the pool keeps.
	p, err := NewPortPool(24201, 24202)
	if err != nil {
		t.Fatal(err)
	}
	p.KeepSockets = 4
	fds, v6, port, _, err := p.listenRawPair(ip, true)
	if err != nil {
		t.Fatal(err)
	}
	p.releaseRawPair(port, fds, v6, ip, nil)
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

// A polled transport's kept pair stays in its poller while the port
// rests: the poller drops what the old call's peer still sends, and the
// next transport on the port adopts the same sockets there and hears its
// own peer (RTP and RTCP) — and none of the old strays. Sockets of a pool
// that keeps nothing leave the poller and close.
func TestPortPoolKeptSocketsStayInTheirPoller(t *testing.T) {
	readers := NewReaders(2)
	if readers == nil {
		t.Skip("no poller on this platform")
	}
	defer readers.Close()
	ip := netip.MustParseAddr("127.0.0.1")
	for _, keep := range []int{0, 4} {
		t.Run(map[int]string{0: "not kept", 4: "kept"}[keep], func(t *testing.T) {
			pool, err := NewPortPool(24401, 24402) // one pair: 24402/3
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			pool.KeepSockets = keep
			now := time.Unix(1000, 0)
			var nowMu sync.Mutex
			pool.now = func() time.Time { nowMu.Lock(); defer nowMu.Unlock(); return now }
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			rtp := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xff, 0xff}
			rtcp := []byte{0x80, 201, 0, 1, 0, 0, 0, 7}

			first, err := NewUDP(pool, ip, UDPOptions{Readers: readers})
			if err != nil {
				t.Fatal(err)
			}
			ino := sockIno(t, first.fds[0])
			first.SetPeer(Peer{Remote: peerAddr})
			rec1 := &recorder{accept: true}
			first.Start(rec1)
			to := first.LocalAddr()
			_, _ = peer.WriteToUDPAddrPort(rtp, to)
			waitFor(t, "the first call's packet", func() bool { n, _ := rec1.counts(); return n == 1 })
			pl, fds := first.poller, first.fds
			first.Close()
			pl.mu.RLock()
			parked := pl.socks[fds[0]].parked && pl.socks[fds[1]].parked
			pl.mu.RUnlock()
			if parked != (keep > 0) {
				t.Fatalf("released sockets parked in their poller: %v, want %v", parked, keep > 0)
			}
			// The old peer goes on sending while the port rests.
			for range 3 {
				_, _ = peer.WriteToUDPAddrPort(rtp, to)
				_, _ = peer.WriteToUDPAddrPort(rtcp, netip.AddrPortFrom(ip, to.Port()+1))
			}
			time.Sleep(50 * time.Millisecond)
			if n, m := rec1.counts(); n != 1 || m != 0 {
				t.Fatalf("a closed transport was handed %d RTP and %d RTCP packets, want 1 and 0", n, m)
			}
			nowMu.Lock()
			now = now.Add(3 * time.Second)
			nowMu.Unlock()

			second, err := NewUDP(pool, ip, UDPOptions{Readers: readers})
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			if same := sockIno(t, second.fds[0]) == ino; same != (keep > 0) {
				t.Fatalf("same RTP socket for the next call: %v, want %v", same, keep > 0)
			}
			second.SetPeer(Peer{Remote: peerAddr})
			rec2 := &recorder{accept: true}
			second.Start(rec2)
			if !second.Polled() || (keep > 0 && second.poller != pl) {
				t.Fatal("the next call's transport is not polled (by the poller its kept sockets are parked in)")
			}
			rtp2 := append([]byte(nil), rtp...)
			rtp2[11] = 8 // another SSRC: the new call's
			_, _ = peer.WriteToUDPAddrPort(rtp2, second.LocalAddr())
			_, _ = peer.WriteToUDPAddrPort(rtcp, netip.AddrPortFrom(ip, second.LocalAddr().Port()+1))
			waitFor(t, "the next call's RTP and RTCP", func() bool { n, m := rec2.counts(); return n >= 1 && m >= 1 })
			time.Sleep(20 * time.Millisecond)
			rec2.mu.Lock()
			defer rec2.mu.Unlock()
			if len(rec2.rtp) != 1 || rec2.rtp[0][11] != 8 || len(rec2.rtcp) != 1 {
				t.Fatalf("the next call heard %d RTP packets (first SSRC byte %d) and %d RTCP, want only its own 1 and 1",
					len(rec2.rtp), rec2.rtp[0][11], len(rec2.rtcp))
			}
		})
	}
}
