package media

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestPortPoolRoundRobinRestAndExhaustion(t *testing.T) {
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
	if ports[0] != 24002 || ports[1] != 24004 || ports[2] != 24006 {
		t.Fatalf("ports %v", ports)
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
	p, _ := NewPortPool(24202, 24206)
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
	for range 3 {
		a, b, port, err := p.ListenPair(ip)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		seen[port] = true
	}
	if !seen[24204] || len(seen) != 3 {
		t.Fatalf("pairs after release: %v", seen)
	}
}
