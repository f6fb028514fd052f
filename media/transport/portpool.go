package transport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// PortPool hands out even UDP ports for RTP from a configured range (the odd
// port above each is RTCP's: ListenPair binds both). Released ports rest for RestTime before
// they are handed out again, so a new call never receives the stray packets
// of the call that used the port before. Each allocation starts at a random
// place in the range and takes the first free pair from there, so an
// attacker who sees one call's port cannot guess the next call's (and
// reuse is spread over the range).
type PortPool struct {
	min, max int
	// RestTime is how long a released port stays unused. Zero means 2 s.
	RestTime time.Duration

	mu       sync.Mutex
	inUse    map[int]bool
	released map[int]time.Time
	now      func() time.Time
}

// ErrNoPorts is returned when every port of the pool is in use or resting.
var ErrNoPorts = errors.New("transport: no free RTP port in range")

// NewPortPool returns a pool over [min, max]. min is rounded up and max down
// to even numbers.
func NewPortPool(min, max int) (*PortPool, error) {
	if min%2 == 1 {
		min++
	}
	if max%2 == 1 {
		max--
	}
	if min <= 0 || max > 65534 || min > max {
		return nil, fmt.Errorf("transport: bad RTP port range %d-%d", min, max)
	}
	return &PortPool{min: min, max: max, inUse: map[int]bool{}, released: map[int]time.Time{}, now: time.Now}, nil
}

// Size returns how many RTP ports the pool spans.
func (p *PortPool) Size() int { return (p.max-p.min)/2 + 1 }

// InUse returns how many ports are currently handed out.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inUse)
}

// Listen binds a UDP socket on ip at a free port of the pool. Ports
// the operating system refuses (taken by another process) are skipped.
func (p *PortPool) Listen(ip netip.Addr) (*net.UDPConn, int, error) {
	conn, _, port, err := p.listen(ip, false)
	return conn, port, err
}

func (p *PortPool) listen(ip netip.Addr, pair bool) (conn, rtcpConn *net.UDPConn, port int, err error) {
	port, err = p.take(func(port int) error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err != nil {
			return err
		}
		if pair {
			rc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port+1))))
			if err != nil {
				c.Close()
				return err
			}
			rtcpConn = rc
		}
		conn = c
		return nil
	})
	return conn, rtcpConn, port, err
}

// take finds a free even port, not resting, that bind accepts (bind
// opens the sockets on it and reports an error when the operating system
// refuses the port, having closed whatever it opened), and marks it used.
func (p *PortPool) take(bind func(port int) error) (int, error) {
	rest := p.RestTime
	if rest == 0 {
		rest = 2 * time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	size := p.Size()
	start := rand.IntN(size)
	for i := range size {
		port := p.min + 2*((start+i)%size)
		if p.inUse[port] {
			continue
		}
		if t, ok := p.released[port]; ok {
			if now.Sub(t) < rest {
				continue
			}
			delete(p.released, port)
		}
		if bind(port) != nil {
			continue
		}
		p.inUse[port] = true
		return port, nil
	}
	return 0, ErrNoPorts
}

// ListenPair is Listen for an RTP/RTCP pair: it binds a free even
// port and the odd port above it (RFC 3550 section 11), skipping a pair
// whose either half the operating system refuses. Release(port) returns
// both; the caller closes both sockets.
func (p *PortPool) ListenPair(ip netip.Addr) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	return p.listen(ip, true)
}

// listenRawPair is ListenPair with sockets Go's netpoller does not know
// (bindRawUDP), for transports read by a poller. The caller closes both
// descriptors.
func (p *PortPool) listenRawPair(ip netip.Addr) (fds [2]int, v6 bool, port int, err error) {
	port, err = p.take(func(port int) error {
		a, v, err := bindRawUDP(ip, port)
		if err != nil {
			return err
		}
		b, _, err := bindRawUDP(ip, port+1)
		if err != nil {
			closeRaw(a)
			return err
		}
		fds, v6 = [2]int{a, b}, v
		return nil
	})
	return fds, v6, port, err
}

// Release returns port to the pool; it rests before it is used again.
func (p *PortPool) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	p.released[port] = p.now()
}
