package transport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
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
	// KeepSockets, when positive, is how many released RTP/RTCP socket
	// pairs (at most an eighth of the process's descriptor limit, so a
	// quarter of the descriptors) the pool keeps bound while they rest (ReleasePair), to hand
	// them out again once rested, emptied of whatever arrived meanwhile,
	// instead of binding new ones: a call then costs no socket, bind or
	// close system calls for its RTP. A kept pair not handed out within
	// KeepIdle after its rest is closed. Set both before first use.
	KeepSockets int
	// KeepIdle is how long a kept pair may wait after its rest; zero
	// means 10 s.
	KeepIdle time.Duration

	mu       sync.Mutex
	inUse    map[int]bool
	released map[int]time.Time
	now      func() time.Time
	kept     []keptPair // oldest first
	keptSet  map[int]bool
	trim     *time.Timer
	closed   bool
	keepCap  int // KeepSockets bounded by the descriptor limit; -1 until known
}

// keptPair is a released socket pair kept bound (PortPool.KeepSockets).
type keptPair struct {
	rtp, rtcp *net.UDPConn
	ip        netip.Addr
	port      int
	at        time.Time
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
	return &PortPool{min: min, max: max, inUse: map[int]bool{}, released: map[int]time.Time{}, keptSet: map[int]bool{}, now: time.Now, keepCap: -1}, nil
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

func (p *PortPool) listen(ip netip.Addr, pair bool) (*net.UDPConn, *net.UDPConn, int, error) {
	rest := p.RestTime
	if rest == 0 {
		rest = 2 * time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if pair && len(p.kept) > 0 {
		if k, ok := p.takeKept(ip, now, rest); ok {
			return k.rtp, k.rtcp, k.port, nil
		}
	}
	size := p.Size()
	start := rand.IntN(size)
	for i := range size {
		port := p.min + 2*((start+i)%size)
		if p.inUse[port] || p.keptSet[port] {
			continue
		}
		if t, ok := p.released[port]; ok {
			if now.Sub(t) < rest {
				continue
			}
			delete(p.released, port)
		}
		conn, err := p.bind(ip, port)
		if err != nil {
			continue
		}
		var rtcpConn *net.UDPConn
		if pair {
			rtcpConn, err = p.bind(ip, port+1)
			if err != nil {
				conn.Close()
				continue
			}
		}
		p.inUse[port] = true
		return conn, rtcpConn, port, nil
	}
	return nil, nil, 0, ErrNoPorts
}

// ListenPair is Listen for an RTP/RTCP pair: it binds a free even
// port and the odd port above it (RFC 3550 section 11), skipping a pair
// whose either half the operating system refuses. Release(port) returns
// both; the caller closes both sockets.
func (p *PortPool) ListenPair(ip netip.Addr) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	return p.listen(ip, true)
}

// bind binds a UDP socket on ip:port. Out of descriptors, it closes the
// oldest kept pair and tries again: kept sockets are a cache that gives
// way, never the reason a call gets no port. The caller holds p.mu.
func (p *PortPool) bind(ip netip.Addr, port int) (*net.UDPConn, error) {
	for {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
		if err == nil || len(p.kept) == 0 || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
			return c, err
		}
		k := p.kept[0]
		p.kept[0] = keptPair{}
		p.kept = p.kept[1:]
		delete(p.keptSet, k.port)
		k.rtp.Close()
		k.rtcp.Close()
	}
}

// takeKept hands out a kept pair on ip that has rested (one of the first
// few, at random, so the next call's port is not the predictable oldest),
// after emptying its sockets. The caller holds p.mu.
func (p *PortPool) takeKept(ip netip.Addr, now time.Time, rest time.Duration) (keptPair, bool) {
	p.trimLocked(now, rest)
	n := 0
	for n < len(p.kept) && n < 8 && now.Sub(p.kept[n].at) >= rest {
		n++
	}
	if n == 0 {
		return keptPair{}, false
	}
	i := rand.IntN(n)
	k := p.kept[i]
	p.kept[i] = p.kept[0]
	p.kept[0] = keptPair{}
	p.kept = p.kept[1:]
	delete(p.keptSet, k.port)
	if k.ip != ip && !(k.ip.IsUnspecified() && ip.IsUnspecified()) {
		// Bound to another address (0.0.0.0 reads back as ::): free the
		// port; the caller binds anew.
		k.rtp.Close()
		k.rtcp.Close()
		return keptPair{}, false
	}
	delete(p.released, k.port)
	drainSocket(k.rtp)
	drainSocket(k.rtcp)
	p.inUse[k.port] = true
	return k, true
}

// trimLocked closes kept pairs idle for KeepIdle after their rest.
func (p *PortPool) trimLocked(now time.Time, rest time.Duration) {
	idle := p.KeepIdle
	if idle <= 0 {
		idle = 10 * time.Second
	}
	for len(p.kept) > 0 && now.Sub(p.kept[0].at) >= rest+idle {
		k := p.kept[0]
		p.kept[0] = keptPair{}
		p.kept = p.kept[1:]
		delete(p.keptSet, k.port)
		k.rtp.Close()
		k.rtcp.Close()
	}
}

// ReleasePair returns a pair bound by ListenPair together with its
// sockets, which nobody may use any more: with KeepSockets the pool keeps
// them bound while the port rests, else it closes them. Either way the
// port rests before it is handed out again.
func (p *PortPool) ReleasePair(port int, rtpConn, rtcpConn *net.UDPConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	now := p.now()
	p.released[port] = now
	if p.keepCap < 0 {
		// Kept sockets may use at most a quarter of the descriptors.
		p.keepCap = min(p.KeepSockets, fdSoftLimit()/8)
	}
	if p.closed || len(p.kept) >= p.keepCap || rtpConn == nil || rtcpConn == nil {
		rtpConn.Close()
		if rtcpConn != nil {
			rtcpConn.Close()
		}
		return
	}
	ip := rtpConn.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	if len(p.kept) == cap(p.kept) && len(p.kept) > 0 {
		// Move the live entries to the front rather than grow the array
		// (takeKept and trimLocked advance the slice's start).
		p.kept = append(make([]keptPair, 0, 2*len(p.kept)), p.kept...)
	}
	p.kept = append(p.kept, keptPair{rtp: rtpConn, rtcp: rtcpConn, ip: ip, port: port, at: now})
	p.keptSet[port] = true
	if p.trim == nil {
		p.trim = time.AfterFunc(time.Second, p.trimTick)
	}
}

// trimTick closes idle kept pairs once a second while there are any.
func (p *PortPool) trimTick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	rest := p.RestTime
	if rest == 0 {
		rest = 2 * time.Second
	}
	p.trimLocked(p.now(), rest)
	if len(p.kept) == 0 || p.closed {
		p.trim = nil
		return
	}
	p.trim.Reset(time.Second)
}

// Close closes the sockets the pool keeps (KeepSockets) and keeps none
// from now on. Ports in use are not affected.
func (p *PortPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, k := range p.kept {
		delete(p.keptSet, k.port)
		k.rtp.Close()
		k.rtcp.Close()
	}
	p.kept = nil
	if p.trim != nil {
		p.trim.Stop()
		p.trim = nil
	}
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
