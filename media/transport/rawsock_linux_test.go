//go:build linux

package transport

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// A polled transport's raw sockets carry RTP and RTCP both ways for
// every address family the server may bind: IPv4, IPv6, and the IPv6
// wildcard (dual-stack) reached over IPv4, whose replies must leave as
// v4-mapped addresses.
func TestUDPRawSocketsAddressFamilies(t *testing.T) {
	cases := []struct {
		name    string
		bind    string // the transport's IP
		phone   string // the phone's IP
		network string
	}{
		{"IPv4", "127.0.0.1", "127.0.0.1", "udp4"},
		{"IPv6", "::1", "::1", "udp6"},
		{"dual-stack wildcard, IPv4 phone", "::", "127.0.0.1", "udp4"},
		{"IPv4 wildcard", "0.0.0.0", "127.0.0.1", "udp4"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			readers := NewReaders(1)
			if readers == nil {
				t.Skip("no poller on this platform")
			}
			defer readers.Close()
			pool, err := NewPortPool(24800+100*i, 24899+100*i)
			if err != nil {
				t.Fatal(err)
			}
			u, err := NewUDP(pool, netip.MustParseAddr(c.bind), UDPOptions{Readers: readers})
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if !u.raw {
				t.Fatal("a transport with Readers does not use raw sockets")
			}
			phoneIP := netip.MustParseAddr(c.phone)
			phone, err := net.ListenUDP(c.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(phoneIP, 0)))
			if err != nil {
				t.Skipf("no %s loopback: %v", c.network, err)
			}
			defer phone.Close()
			phoneRTCP, err := net.ListenUDP(c.network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(phoneIP, 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer phoneRTCP.Close()
			u.SetPeer(Peer{Remote: netip.AddrPortFrom(phoneIP, 9), RemoteRTCP: phoneRTCP.LocalAddr().(*net.UDPAddr).AddrPort()})
			rec := &recorder{accept: true}
			u.Start(rec)
			if !u.Polled() {
				t.Fatal("not polled")
			}
			to := netip.AddrPortFrom(phoneIP, u.LocalAddr().Port())
			rtp := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xd5, 0xd5}
			if _, err := phone.WriteToUDPAddrPort(rtp, to); err != nil {
				t.Fatal(err)
			}
			// The stream sees the packet before the transport latches.
			want := phone.LocalAddr().(*net.UDPAddr).AddrPort()
			waitFor(t, "the phone's RTP to latch "+want.String(), func() bool {
				n, _ := rec.counts()
				return n == 1 && u.Remote() == want
			})
			if err := u.WriteRTP(rtp); err != nil {
				t.Fatalf("WriteRTP: %v", err)
			}
			if err := u.WriteRTCP([]byte{0x80, 201, 0, 1, 0, 0, 0, 7}); err != nil {
				t.Fatalf("WriteRTCP: %v", err)
			}
			buf := make([]byte, 64)
			for _, c := range []struct {
				conn *net.UDPConn
				want int
				what string
			}{{phone, len(rtp), "RTP"}, {phoneRTCP, 8, "RTCP"}} {
				_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, from, err := c.conn.ReadFromUDPAddrPort(buf)
				if err != nil || n != c.want {
					t.Fatalf("phone read %d bytes of %s, %v", n, c.what, err)
				}
				if from.Addr().Unmap() != phoneIP {
					t.Fatalf("%s came from %v, want the transport on %v", c.what, from, phoneIP)
				}
			}
		})
	}
}

// Sends racing Close never reach a closed (and possibly reused)
// descriptor: once Close returns, every write fails with ErrClosed, and
// the run is clean under -race.
func TestUDPRawWriteDuringClose(t *testing.T) {
	readers := NewReaders(1)
	if readers == nil {
		t.Skip("no poller on this platform")
	}
	defer readers.Close()
	pool, err := NewPortPool(25300, 25399)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for range 20 {
		u, err := NewUDP(pool, netip.MustParseAddr("127.0.0.1"), UDPOptions{Readers: readers})
		if err != nil {
			t.Fatal(err)
		}
		u.SetPeer(Peer{Remote: sink.LocalAddr().(*net.UDPAddr).AddrPort()})
		u.Start(&recorder{})
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pkt := []byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7}
				for i := 0; i < 100000; i++ {
					select {
					case <-stop:
						return
					default:
					}
					_ = u.WriteRTP(pkt)
				}
			}()
		}
		time.Sleep(time.Millisecond)
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		if err := u.WriteRTP([]byte{0x80, 0}); !errors.Is(err, ErrClosed) {
			t.Fatalf("WriteRTP after Close: %v, want ErrClosed", err)
		}
		close(stop)
		wg.Wait()
	}
}
