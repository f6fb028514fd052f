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
// port above each is RTCP's: ListenPair binds both; a transport with
// RTCP on its RTP port binds the even one alone, Listen). Released ports rest for RestTime before
// they are handed out again, so a new call never receives the stray packets
// of the call that used the port before. Each allocation draws a free
// pair at random, so an attacker who sees one call's port cannot guess the
// next call's (and reuse is spread over the range); it costs the same
// whether the range is empty or nearly full.
type PortPool struct {
	min, max int
	// RestTime is how long a released port stays unused. Zero means 2 s.
	RestTime time.Duration
	// KeepSockets, when positive, is how many released RTP/RTCP socket
	// pairs of polled transports (raw descriptors; at most an eighth of
	// the process's descriptor limit, so a quarter of the descriptors)
	// the pool keeps bound while they rest (releaseRawPair), to hand
	// them out again once rested, emptied of whatever arrived meanwhile,
	// instead of binding new ones: a call then costs no socket, bind or
	// close system calls for its RTP. A kept pair not handed out within
	// KeepIdle after its rest is closed. Set both before first use.
	KeepSockets int
	// KeepIdle is how long a kept pair may wait after its rest; zero
	// means 10 s.
	KeepIdle time.Duration

	mu    sync.Mutex
	state []portState // by slot: (port-min)/2
	gen   []uint32    // by slot: bumped when the port starts a rest or is kept
	free  []int32     // slots free to take, in no order (take picks at random)
	// resting holds released ports in release order from restHead on;
	// entries whose slot has moved on since (kept, or rested and taken,
	// and released again) no longer match its gen and are skipped.
	resting  []restEntry
	restHead int
	used     int // slots in use
	now      func() time.Time
	kept     []keptPair // oldest first
	trim     *time.Timer
	closed   bool
	keepCap  int // KeepSockets bounded by the descriptor limit; -1 until known
	rtpCap   int // descriptors of kept and in-use ports together (releaseRawPair)
	useCap   int // descriptors of ports in use (take)
	// width is, by slot, how many sockets the port in use or kept has:
	// 2 (RTP and RTCP) or 1 (RTCP on the RTP port). usedFDs and keptFDs
	// are their sums over the ports in use and the kept ones.
	width            []uint8
	usedFDs, keptFDs int
}

// portState is where a port of the pool is: free, in use, resting, or
// resting and kept bound (keptPair).
type portState uint8

const (
	portFree portState = iota
	portUsed
	portResting
	portKept
)

// restEntry is a port's start of rest (PortPool.resting).
type restEntry struct {
	slot int32
	gen  uint32
	at   time.Time
}

// keptPair is a released socket pair kept bound (PortPool.KeepSockets).
type keptPair struct {
	fds  [2]int // RTP, RTCP (raw descriptors, see bindRawUDP); RTCP -1 when it shares the RTP socket
	v6   bool
	ip   netip.Addr // the address asked for when bound
	port int
	at   time.Time
	// poller, when set, still has the sockets in its epoll set, parked
	// (rxPoller.park): it drops their strays, and the next call's
	// transport adopts them there without a system call.
	poller *rxPoller
}

func (k keptPair) close() {
	if k.poller != nil {
		k.poller.forget(k.fds)
	}
	for _, fd := range k.fds {
		if fd >= 0 {
			closeRaw(fd)
		}
	}
}

// pairWidth is how many sockets a port takes: 2 for an RTP/RTCP pair,
// 1 for RTP with RTCP on it.
func pairWidth(pair bool) int {
	if pair {
		return 2
	}
	return 1
}

// width is how many sockets the pair has.
func (k keptPair) width() int { return pairWidth(k.fds[1] >= 0) }

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
	p := &PortPool{min: min, max: max, now: time.Now, keepCap: -1}
	n := p.Size()
	p.state, p.gen, p.free, p.width = make([]portState, n), make([]uint32, n), make([]int32, n), make([]uint8, n)
	for i := range p.free {
		p.free[i] = int32(i)
	}
	return p, nil
}

// slot returns port's index in the pool's tables; ok is false for a
// port the pool does not span.
func (p *PortPool) slot(port int) (int32, bool) {
	if port < p.min || port > p.max || port%2 != 0 {
		return 0, false
	}
	return int32((port - p.min) / 2), true
}

// restLocked starts the rest of slot at at. The caller holds p.mu.
func (p *PortPool) restLocked(slot int32, at time.Time) {
	p.gen[slot]++
	p.state[slot] = portResting
	p.resting = append(p.resting, restEntry{slot: slot, gen: p.gen[slot], at: at})
}

// wakeLocked frees the ports whose rest is over: the oldest entries of
// p.resting, so each release costs O(1) however full the range is. An
// entry pushed out of order (a kept pair closed, resting since it was
// released) waits at most one rest behind younger ones: later, never
// earlier. The caller holds p.mu.
func (p *PortPool) wakeLocked(now time.Time, rest time.Duration) {
	for p.restHead < len(p.resting) {
		e := p.resting[p.restHead]
		if now.Sub(e.at) < rest {
			break
		}
		p.resting[p.restHead] = restEntry{}
		p.restHead++
		if p.state[e.slot] == portResting && p.gen[e.slot] == e.gen {
			p.state[e.slot] = portFree
			p.free = append(p.free, e.slot)
		}
	}
	if p.restHead == len(p.resting) {
		p.resting, p.restHead = p.resting[:0], 0
	} else if p.restHead > 1024 && p.restHead*2 > len(p.resting) {
		n := copy(p.resting, p.resting[p.restHead:])
		p.resting, p.restHead = p.resting[:n], 0
	}
}

// rest returns RestTime, or its default.
func (p *PortPool) rest() time.Duration {
	if p.RestTime == 0 {
		return 2 * time.Second
	}
	return p.RestTime
}

// dropKept closes a kept pair that will not be handed out: its port
// goes on resting from the time it was released. The caller holds p.mu.
func (p *PortPool) dropKept(k keptPair) {
	k.close()
	p.keptFDs -= k.width()
	if slot, ok := p.slot(k.port); ok && p.state[slot] == portKept {
		p.restLocked(slot, k.at)
	}
}

// popKept removes and returns the kept pair at index i (its descriptors
// still open). The caller holds p.mu.
func (p *PortPool) popKept(i int) keptPair {
	k := p.kept[i]
	p.kept[i] = p.kept[0]
	p.kept[0] = keptPair{}
	p.kept = p.kept[1:]
	return k
}

// Size returns how many RTP ports the pool spans.
func (p *PortPool) Size() int { return (p.max-p.min)/2 + 1 }

// InUse returns how many ports are currently handed out.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// Listen binds a UDP socket on ip at a free port of the pool (RTP with
// RTCP on the same port). Ports the operating system refuses (taken by
// another process) are skipped.
func (p *PortPool) Listen(ip netip.Addr) (*net.UDPConn, int, error) {
	conn, _, port, err := p.listen(ip, false)
	return conn, port, err
}

func (p *PortPool) listen(ip netip.Addr, pair bool) (conn, rtcpConn *net.UDPConn, port int, err error) {
	width := pairWidth(pair)
	port, err = p.take(width, func(port int) error {
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

// take hands out a free port, not resting, that bind accepts (bind
// opens the sockets on it and reports an error when the operating system
// refuses the port, having closed whatever it opened), and marks it used.
// The port is drawn at random from the free ones, in constant time however
// full the range is: at thousands of calls a second most of the range is
// in use or resting, and a scan for a free port cost a quarter of the
// server's CPU. A port the operating system refuses (another process
// holds it) rests before it is tried again.
func (p *PortPool) take(width int, bind func(port int) error) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.initCaps(); p.useCap > 0 && p.usedFDs+width > p.useCap {
		// Calls may hold 90 % of the process's descriptors, no more:
		// the rest is SIP's and HTTP's (kept sockets give way, see
		// bindRaw). A flood past that gets "no ports" answers while
		// /metrics, /readyz and the SIP listeners keep working.
		return 0, ErrNoPorts
	}
	now := p.now()
	p.wakeLocked(now, p.rest())
	for len(p.free) > 0 {
		i := rand.IntN(len(p.free))
		slot := p.free[i]
		p.free[i] = p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		port := p.min + 2*int(slot)
		if err := bind(port); err != nil {
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: every other port would fail the
				// same way (thousands of failing socket calls per call).
				p.free = append(p.free, slot)
				return 0, ErrNoPorts
			}
			p.restLocked(slot, now)
			continue
		}
		p.state[slot] = portUsed
		p.width[slot] = uint8(width)
		p.used++
		p.usedFDs += width
		return port, nil
	}
	return 0, ErrNoPorts
}

// initCaps sets, once, the pool's descriptor budget from the process's
// limit: kept sockets may use at most half of the descriptors, and kept
// and in-use ports together two thirds (a quarter is SIP connections',
// see sip.ConnLimits). At a steady call rate the kept pairs are the
// ports resting, twice the calls set up per second, and each one kept
// saves the next call its socket, bind and close calls. Ports in use
// alone may take 90 % of the descriptors (kept ones are closed to make
// room): a third, like the kept pairs, refused 0.6–5.7 % of calls at
// 6,000/s with 20,000 descriptors. A port with RTCP on it costs one
// descriptor, a pair two. Zero caps (no limit known) mean none. The
// caller holds p.mu.
func (p *PortPool) initCaps() {
	if p.keepCap >= 0 {
		return
	}
	lim := fdSoftLimit()
	p.keepCap = min(p.KeepSockets, lim/4)
	p.rtpCap = lim * 2 / 3
	p.useCap = lim * 9 / 10
}

// ListenPair is Listen for an RTP/RTCP pair: it binds a free even
// port and the odd port above it (RFC 3550 section 11), skipping a pair
// whose either half the operating system refuses. Release(port) returns
// both; the caller closes both sockets.
func (p *PortPool) ListenPair(ip netip.Addr) (rtpConn, rtcpConn *net.UDPConn, port int, err error) {
	return p.listen(ip, true)
}

// bindRaw binds a raw UDP socket on ip:port (bindRawUDP). Out of
// descriptors, it closes the oldest kept pair and tries again: kept
// sockets are a cache that gives way, never the reason a call gets no
// port. The caller holds p.mu.
func (p *PortPool) bindRaw(ip netip.Addr, port int) (int, bool, error) {
	for {
		fd, v6, err := bindRawUDP(ip, port)
		if err == nil || len(p.kept) == 0 || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
			return fd, v6, err
		}
		p.dropKept(p.popKept(0))
	}
}

// takeKept hands out a kept pair on ip of width sockets that has rested
// (one of the first few, at random, so the next call's port is not the
// predictable oldest), after emptying its sockets. The caller holds p.mu.
func (p *PortPool) takeKept(ip netip.Addr, width int, now time.Time, rest time.Duration) (keptPair, bool) {
	p.trimLocked(now, rest)
	n := 0
	for n < len(p.kept) && n < 8 && now.Sub(p.kept[n].at) >= rest {
		n++
	}
	if n == 0 {
		return keptPair{}, false
	}
	k := p.popKept(rand.IntN(n))
	if k.ip != ip || k.width() != width {
		// Bound to another address, or with another number of
		// sockets: free the port; the caller binds anew.
		p.dropKept(k)
		return keptPair{}, false
	}
	p.keptFDs -= width
	if k.poller == nil {
		// Nobody read them while they rested: drop the strays now.
		// (Parked in a poller, they were read and dropped as they came.)
		for _, fd := range k.fds {
			if fd >= 0 {
				drainSocket(fd)
			}
		}
	}
	slot, _ := p.slot(k.port)
	p.state[slot] = portUsed
	p.width[slot] = uint8(width)
	p.used++
	p.usedFDs += width
	return k, true
}

// trimLocked closes kept pairs idle for KeepIdle after their rest.
func (p *PortPool) trimLocked(now time.Time, rest time.Duration) {
	idle := p.KeepIdle
	if idle <= 0 {
		idle = 10 * time.Second
	}
	for len(p.kept) > 0 && now.Sub(p.kept[0].at) >= rest+idle {
		p.dropKept(p.popKept(0))
	}
}

// releaseRawPair returns a pair bound by listenRawPair on ip together
// with its descriptors, which nobody may use any more (no send in
// flight; out of every poller, or parked in pl: see rxPoller.park): with
// KeepSockets the pool keeps them bound while the port rests, else it
// closes them. Either way the port rests before it is handed out again.
func (p *PortPool) releaseRawPair(port int, fds [2]int, v6 bool, ip netip.Addr, pl *rxPoller) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := keptPair{fds: fds, v6: v6, ip: ip, port: port, poller: pl}
	slot, ok := p.slot(port)
	if !ok || p.state[slot] != portUsed {
		k.close() // released twice: the descriptors are still ours to close
		return
	}
	p.used--
	p.usedFDs -= int(p.width[slot])
	now := p.now()
	p.initCaps()
	k.at = now
	if p.closed || len(p.kept) >= p.keepCap || p.keptFDs+p.usedFDs+k.width() > p.rtpCap {
		k.close()
		p.restLocked(slot, now)
		return
	}
	p.keptFDs += k.width()
	p.gen[slot]++
	p.state[slot] = portKept
	if len(p.kept) == cap(p.kept) && len(p.kept) > 0 {
		// Move the live entries to the front rather than grow the array
		// (takeKept and trimLocked advance the slice's start).
		p.kept = append(make([]keptPair, 0, 2*len(p.kept)), p.kept...)
	}
	p.kept = append(p.kept, k)
	if p.trim == nil {
		p.trim = time.AfterFunc(time.Second, p.trimTick)
	}
}

// trimTick closes idle kept pairs once a second while there are any.
func (p *PortPool) trimTick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trimLocked(p.now(), p.rest())
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
		p.dropKept(k)
	}
	p.kept = nil
	if p.trim != nil {
		p.trim.Stop()
		p.trim = nil
	}
}

// listenRawPair is ListenPair (pair) or Listen with sockets Go's
// netpoller does not know (bindRawUDP), for transports read by a poller;
// without pair fds[1] is -1. With KeepSockets a kept pair that has
// rested comes first, with the poller it is parked in (else pl is nil).
// The caller hands the descriptors back with releaseRawPair.
func (p *PortPool) listenRawPair(ip netip.Addr, pair bool) (fds [2]int, v6 bool, port int, pl *rxPoller, err error) {
	width := pairWidth(pair)
	if p.KeepSockets > 0 {
		p.mu.Lock()
		k, ok := p.takeKept(ip, width, p.now(), p.rest())
		p.mu.Unlock()
		if ok {
			return k.fds, k.v6, k.port, k.poller, nil
		}
	}
	port, err = p.take(width, func(port int) error {
		a, v, err := p.bindRaw(ip, port)
		if err != nil {
			return err
		}
		b := -1
		if pair {
			if b, _, err = p.bindRaw(ip, port+1); err != nil {
				closeRaw(a)
				return err
			}
		}
		fds, v6 = [2]int{a, b}, v
		return nil
	})
	return fds, v6, port, nil, err
}

// Release returns port to the pool; it rests before it is used again.
func (p *PortPool) Release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	slot, ok := p.slot(port)
	if !ok || p.state[slot] != portUsed {
		return
	}
	p.used--
	p.usedFDs -= int(p.width[slot])
	p.restLocked(slot, p.now())
}
