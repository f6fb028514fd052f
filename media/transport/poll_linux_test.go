//go:build linux

package transport

import (
	"net"
	"testing"
)

// recvFrom reads a datagram and its source without allocating.
func TestPollerRecvFromAllocatesNothing(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	fd, err := socketFD(rx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	want := tx.LocalAddr().(*net.UDPAddr).AddrPort()
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := tx.WriteToUDPAddrPort([]byte("0123456789ab"), rx.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			n, from, errno := recvFrom(fd, buf)
			if errno == 0 {
				if n != 12 || from != want {
					t.Fatalf("got %d bytes from %s, want 12 from %s", n, from, want)
				}
				return
			}
		}
		t.Fatal("datagram never arrived")
	})
	// WriteToUDPAddrPort itself does not allocate either.
	if allocs != 0 {
		t.Fatalf("%.1f allocations per datagram", allocs)
	}
}

// socketFD returns the descriptor of c. It stays valid until c is closed,
// which the transport does only after remove.
func socketFD(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}
