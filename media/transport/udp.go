package transport

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// UDPOptions tune a UDP transport. The zero value is usable.
type UDPOptions struct {
	Logger *slog.Logger
	// Readers, if set, read the transport's sockets (NewReaders);
	// otherwise it runs a reader goroutine per socket.
	Readers *Readers
	// UnverifiedBudget, when above zero, makes the transport hold its RTP
	// until the peer has proven that it wants it — a packet from the
	// configured remote address (which also latches), or Verify (the
	// signaling saw the ACK of our 2xx) — and a peer that never does gets
	// at most this many packets and no RTCP: an INVITE naming a third
	// party's address cannot turn the server into an amplifier. A gated
	// transport with no remote configured latches nothing. Zero sends
	// without proof, and latches the first source when no remote is
	// configured (trusted, in-process peers). With a remote configured,
	// latching is strict either way: its IP only, or the NAT rule
	// (Peer.NATSource).
	UnverifiedBudget int
	// NATLatchWindow bounds the NAT latching rule (Peer.NATSource) to
	// this long after SetPeer; zero means 10 s.
	NATLatchWindow time.Duration
}

// UDP is the transport of a SIP leg's stream: an RTP socket on an even
// port of a PortPool and its RTCP socket on the odd port above, read by a
// poller of Readers (or by two goroutines). It does symmetric RTP with
// strict source locking: the first packet from an acceptable source (see
// UDPOptions.UnverifiedBudget and Peer.NATSource) that the stream accepts
// latches the remote address, and after that packets from anywhere else
// are dropped. RTCP is accepted from the peer's IP only, on either port;
// without rtcp-mux our RTCP goes to the port the peer's RTCP comes from.
//
// Cost on the media path: one sendto per packet out, one recvfrom per
// packet in, a few atomic loads; no allocation.
type UDP struct {
	conn, rtcpConn *net.UDPConn
	port           int
	pool           *PortPool
	local          netip.AddrPort
	log            *slog.Logger
	readers        *Readers

	peer         atomic.Pointer[Peer]
	remote       atomic.Pointer[netip.AddrPort]
	latched      atomic.Bool
	configuredAt atomic.Int64 // unix ns of the last SetPeer that moved Remote
	natWindow    time.Duration

	gated  bool
	proven atomic.Bool
	budget atomic.Int64
	unsent atomic.Uint64

	rtcpMu   sync.Mutex
	rtcpDest netip.AddrPort // source of the last RTCP accepted on the RTCP port

	dropped, rtcpDropped atomic.Uint64

	recv    Receiver
	poller  *rxPoller // reads both sockets when set (else two reader goroutines)
	pollFDs [2]int

	mu       sync.Mutex // guards started, closed
	started  bool
	closed   bool
	isClosed atomic.Bool // closed, for the send paths (no lock)
	done     chan struct{}
	wg       sync.WaitGroup
}

// NewUDP binds an RTP/RTCP port pair from pool on ip. Nothing is read
// until Start, so the address can go into an SDP answer before
// negotiation finishes.
func NewUDP(pool *PortPool, ip netip.Addr, opts UDPOptions) (*UDP, error) {
	conn, rtcpConn, port, err := pool.ListenPair(ip)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	u := &UDP{conn: conn, rtcpConn: rtcpConn, port: port, pool: pool, local: netip.AddrPortFrom(ip, uint16(port)),
		log: log, readers: opts.Readers, natWindow: opts.NATLatchWindow, gated: opts.UnverifiedBudget > 0,
		done: make(chan struct{})}
	if u.natWindow <= 0 {
		u.natWindow = 10 * time.Second
	}
	u.budget.Store(int64(opts.UnverifiedBudget))
	return u, nil
}

// LocalAddr is the address the transport receives RTP on.
func (u *UDP) LocalAddr() netip.AddrPort { return u.local }

// SetPeer applies the negotiated peer; a changed remote address
// un-latches symmetric RTP.
func (u *UDP) SetPeer(p Peer) {
	prev := u.peer.Swap(&p)
	if prev == nil || prev.Remote != p.Remote || u.remote.Load() == nil {
		r := p.Remote
		u.configuredAt.Store(time.Now().UnixNano())
		u.remote.Store(&r)
		u.latched.Store(false)
	}
}

// Remote returns where RTP goes now: the latched source, or the
// configured remote before latching.
func (u *UDP) Remote() netip.AddrPort {
	if r := u.remote.Load(); r != nil {
		return *r
	}
	return netip.AddrPort{}
}

// RTCPRemote returns where RTCP goes now (zero if nowhere yet).
func (u *UDP) RTCPRemote() netip.AddrPort {
	_, to, ok := u.rtcpRoute()
	if !ok {
		return netip.AddrPort{}
	}
	return to
}

// RTCPSource returns the source of the last RTCP accepted on the RTCP
// port (zero if none): where our RTCP goes without rtcp-mux.
func (u *UDP) RTCPSource() netip.AddrPort {
	u.rtcpMu.Lock()
	defer u.rtcpMu.Unlock()
	return u.rtcpDest
}

// Polled reports whether a poller of the transport's Readers reads its
// sockets (false: its own reader goroutines, or not started).
func (u *UDP) Polled() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.poller != nil
}

// Verify records that the peer has proven it wants our RTP (the ACK of a
// 2xx we sent arrived, or the peer answered our INVITE).
func (u *UDP) Verify() { u.proven.Store(true) }

// Verified reports whether the peer has proven it wants our RTP (always
// true without an UnverifiedBudget).
func (u *UDP) Verified() bool { return !u.gated || u.proven.Load() }

// mayLatch reports whether the first packet from from may latch the
// stream: it must come from the configured remote's IP (its port may
// differ: symmetric RTP through NAT), or from the signaling source of a
// peer that advertised a private address, soon after SetPeer. Without
// send gating and with no remote configured, any first source latches.
func (u *UDP) mayLatch(from netip.AddrPort) bool {
	p := u.peer.Load()
	if p == nil || !p.Remote.IsValid() {
		return !u.gated
	}
	if from.Addr() == p.Remote.Addr() {
		return true
	}
	if !p.NATSource.IsValid() || from.Addr() != p.NATSource || !isPrivateAddr(p.Remote.Addr()) {
		return false
	}
	return time.Since(time.Unix(0, u.configuredAt.Load())) < u.natWindow
}

var sharedAddrSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598, carrier-grade NAT

// isPrivateAddr reports addresses that only mean something behind a NAT.
func isPrivateAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLinkLocalUnicast() || sharedAddrSpace.Contains(a)
}

// Start begins reading both sockets for r: on a poller of the
// transport's Readers, or with two goroutines.
func (u *UDP) Start(r Receiver) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	u.recv = r
	if u.startPolling() {
		return
	}
	u.wg.Add(2)
	go u.readLoop(u.conn, false)
	go u.readLoop(u.rtcpConn, true)
}

// startPolling hands both sockets to a poller; false means the transport
// reads them with its own goroutines.
func (u *UDP) startPolling() bool {
	pl := u.readers.pick()
	if pl == nil {
		return false
	}
	rtpFD, err := pl.add(u.conn, u, false)
	if err != nil {
		u.log.Warn("transport: socket poller refused the RTP socket; using a reader goroutine", "error", err)
		return false
	}
	rtcpFD, err := pl.add(u.rtcpConn, u, true)
	if err != nil {
		u.log.Warn("transport: socket poller refused the RTCP socket; using reader goroutines", "error", err)
		pl.remove(rtpFD)
		return false
	}
	u.poller, u.pollFDs = pl, [2]int{rtpFD, rtcpFD}
	return true
}

func (u *UDP) readLoop(c *net.UDPConn, rtcp bool) {
	defer u.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP-induced errors (port unreachable) are transient on UDP.
			select {
			case <-u.done:
				return
			default:
				continue
			}
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if rtcp {
			u.handleRTCP(buf[:n], from, true)
		} else {
			u.handleRTP(buf[:n], from)
		}
	}
}

// handleRTP takes one datagram from the RTP socket: RTCP demultiplexing
// (RFC 5761), source locking, then the stream; the first packet the
// stream accepts from an acceptable source latches it.
func (u *UDP) handleRTP(pkt []byte, from netip.AddrPort) {
	if IsRTCP(pkt) {
		u.handleRTCP(pkt, from, false)
		return
	}
	latched := u.latched.Load()
	if !latched {
		if !u.mayLatch(from) {
			// A stranger guessing the port before the peer's first
			// packet: never latch onto it.
			u.dropped.Add(1)
			return
		}
	} else if r := u.remote.Load(); r == nil || *r != from {
		u.dropped.Add(1)
		return
	}
	if u.recv.ReceiveRTP(pkt) && !latched {
		u.latch(from)
	}
}

// latch locks the stream onto from (it is the only allocation, once per
// latching, kept out of handleRTP so its parameter stays on the stack).
func (u *UDP) latch(from netip.AddrPort) {
	r := from
	u.remote.Store(&r)
	u.latched.Store(true)
	u.proven.Store(true)
}

// handleRTCP takes an RTCP datagram from the RTP socket (rtcp-mux) or the
// RTCP socket. It is accepted from the peer's IP address only; an
// accepted one from the RTCP port says where our RTCP goes.
func (u *UDP) handleRTCP(pkt []byte, from netip.AddrPort, onRTCPPort bool) {
	if r := u.remote.Load(); r == nil || from.Addr() != r.Addr() {
		if u.rtcpDropped.Add(1) == 1 {
			u.log.Debug("transport: RTCP from a stranger dropped", "from", from.String())
		}
		return
	}
	if u.recv.ReceiveRTCP(pkt) && onRTCPPort {
		u.rtcpMu.Lock()
		u.rtcpDest = from
		u.rtcpMu.Unlock()
	}
}

// WriteRTP sends an RTP packet to the remote address, unless send gating
// withholds it.
func (u *UDP) WriteRTP(pkt []byte) error {
	r := u.remote.Load()
	if r == nil || !r.IsValid() {
		return ErrNoPeer
	}
	if u.gated && !u.proven.Load() && u.budget.Add(-1) < 0 {
		u.unsent.Add(1)
		return ErrWithheld
	}
	if u.isClosed.Load() {
		// Closed: its socket may be the pool's again (KeepSockets), soon
		// another call's; a bridge still wired to it sends nothing.
		return net.ErrClosed
	}
	_, err := u.conn.WriteToUDPAddrPort(pkt, *r)
	return err
}

// rtcpRoute says which socket RTCP leaves from and where it goes: the
// RTP socket with rtcp-mux; else the RTCP socket, to the port the peer's
// RTCP came from (unless a re-INVITE moved the peer), or the peer's
// a=rtcp port, or the RTP port + 1.
func (u *UDP) rtcpRoute() (*net.UDPConn, netip.AddrPort, bool) {
	r := u.remote.Load()
	if r == nil || !r.IsValid() || r.Addr().IsUnspecified() {
		return nil, netip.AddrPort{}, false
	}
	to := *r
	p := u.peer.Load()
	if p != nil && p.RTCPMux {
		return u.conn, to, true
	}
	u.rtcpMu.Lock()
	dest := u.rtcpDest
	u.rtcpMu.Unlock()
	switch {
	case dest.IsValid() && dest.Addr() == to.Addr(): // not stale after a re-INVITE moved the peer
		return u.rtcpConn, dest, true
	case p != nil && p.RemoteRTCP.IsValid():
		return u.rtcpConn, p.RemoteRTCP, true
	case to.Port() < 65535:
		return u.rtcpConn, netip.AddrPortFrom(to.Addr(), to.Port()+1), true
	}
	return nil, netip.AddrPort{}, false
}

// WriteRTCP sends a compound RTCP packet (see rtcpRoute).
func (u *UDP) WriteRTCP(pkt []byte) error {
	conn, to, ok := u.rtcpRoute()
	if !ok {
		return ErrNoPeer
	}
	if u.isClosed.Load() {
		return net.ErrClosed // see WriteRTP
	}
	_, err := conn.WriteToUDPAddrPort(pkt, to)
	return err
}

// Stats returns the transport's counters.
func (u *UDP) Stats() Stats {
	return Stats{Dropped: u.dropped.Load(), RTCPDropped: u.rtcpDropped.Load(), Unsent: u.unsent.Load()}
}

// Close stops reading, closes both sockets and returns the port pair to
// the pool, where it rests before reuse. It is safe to call twice.
func (u *UDP) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.closed = true
	u.isClosed.Store(true)
	u.mu.Unlock()
	close(u.done)
	polled := u.poller != nil
	if polled {
		// Out of the poller before the sockets close or go back to the
		// pool (their numbers may be reused at once).
		u.poller.remove(u.pollFDs[0])
		u.poller.remove(u.pollFDs[1])
		u.wg.Wait()
		// Nobody reads the sockets any more: the pool may keep them
		// bound for the port's next call (PortPool.KeepSockets).
		u.pool.ReleasePair(u.port, u.conn, u.rtcpConn)
		return nil
	}
	// Reader goroutines return when their sockets close.
	err := u.conn.Close()
	u.rtcpConn.Close()
	u.wg.Wait()
	u.pool.Release(u.port)
	return err
}
