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
	// RTCPOnRTPPort binds the RTP port alone: RTCP is received and sent
	// on it whether or not the peer multiplexes (RFC 5761), and the
	// signaling must say so with a=rtcp naming the RTP port (RFC 3605).
	// A peer that ignores a=rtcp sends its RTCP to the port above, where
	// nothing listens: the call is unaffected, its RTCP reports are
	// lost. It halves the descriptors and socket system calls per call.
	RTCPOnRTPPort bool
	// NATLatchWindow bounds the NAT latching rule (Peer.NATSource) to
	// this long after SetPeer; zero means 10 s.
	NATLatchWindow time.Duration
}

// UDP is the transport of a SIP leg's stream: an RTP socket on an even
// port of a PortPool and its RTCP socket on the odd port above (or none,
// UDPOptions.RTCPOnRTPPort), read by a poller of Readers (or by a
// goroutine per socket). It does symmetric RTP with
// strict source locking: the first packet from an acceptable source (see
// UDPOptions.UnverifiedBudget and Peer.NATSource) that the stream accepts
// latches the remote address, and after that packets from anywhere else
// are dropped. RTCP is accepted from the peer's IP only, on either port;
// without rtcp-mux our RTCP goes to the port the peer's RTCP comes from,
// from our RTCP socket (or the RTP one when that is the only one).
//
// With Readers the sockets are raw descriptors outside Go's netpoller,
// read by the poller and written with raw sendto(2); without, they are
// net.UDPConns read by two goroutines.
//
// Cost on the media path: one sendto per packet out, one recvfrom per
// packet in (plus a share of an epoll_wait), a few atomic loads; no
// allocation.
type UDP struct {
	// Either two net.UDPConns read by goroutines, or (raw) two sockets
	// outside Go's netpoller, read by a poller of Readers.
	conn, rtcpConn *net.UDPConn
	raw            bool
	fds            [2]int // raw: the RTP and RTCP sockets (RTCP -1 with single)
	single         bool   // no RTCP socket: RTCP on the RTP port (UDPOptions.RTCPOnRTPPort)
	v6             bool   // raw: the sockets are IPv6 (dual-stack)
	fdUsers        fdGuard
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
	rtcpDest netip.AddrPort // source of the last RTCP accepted on the RTCP port (single: not muxed)

	dropped, rtcpDropped atomic.Uint64

	recv   Receiver
	poller *rxPoller // reads both sockets when set (else two reader goroutines)
	// parkedIn is the poller a kept pair came parked in (PortPool
	// KeepSockets), until Start adopts it there.
	parkedIn *rxPoller

	mu      sync.Mutex // guards started, closed
	started bool
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewUDP binds an RTP/RTCP port pair from pool on ip (the RTP port
// alone with RTCPOnRTPPort). Nothing is read until Start, so the address
// can go into an SDP answer before negotiation finishes.
func NewUDP(pool *PortPool, ip netip.Addr, opts UDPOptions) (*UDP, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	u := &UDP{pool: pool, log: log, readers: opts.Readers, natWindow: opts.NATLatchWindow, gated: opts.UnverifiedBudget > 0,
		done: make(chan struct{}), single: opts.RTCPOnRTPPort}
	var err error
	if rawSockets && opts.Readers.Len() > 0 {
		u.raw = true
		u.fds, u.v6, u.port, u.parkedIn, err = pool.listenRawPair(ip, !u.single)
	} else {
		u.conn, u.rtcpConn, u.port, err = pool.listen(ip, !u.single)
	}
	if err != nil {
		return nil, err
	}
	u.local = netip.AddrPortFrom(ip, uint16(u.port))
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

// Start begins reading the sockets for r: on a poller of the
// transport's Readers, or with a goroutine each.
func (u *UDP) Start(r Receiver) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	u.recv = r
	if u.raw {
		if err := u.startPolling(); err != nil {
			// Only epoll_ctl running out of memory or watches gets
			// here; the stream hears nothing and its media timeout
			// ends the call.
			u.log.Error("transport: socket poller refused the RTP/RTCP sockets; nothing will be received", "error", err)
		}
		return
	}
	u.wg.Add(1)
	go u.readLoop(u.conn, false)
	if u.rtcpConn != nil {
		u.wg.Add(1)
		go u.readLoop(u.rtcpConn, true)
	}
}

// startPolling hands both raw sockets to a poller of the transport's
// Readers: the one they are parked in when they are a kept pair (no
// system call), else the next one.
func (u *UDP) startPolling() error {
	if pl := u.parkedIn; pl != nil {
		u.parkedIn = nil
		if u.readers.has(pl) && pl.adopt(u.fds, u) {
			u.poller = pl
			return nil
		}
		pl.remove(u.fds[0])
		pl.remove(u.fds[1])
	}
	pl := u.readers.pick()
	if err := pl.add(u.fds[0], u, false); err != nil {
		return err
	}
	if u.fds[1] >= 0 {
		if err := pl.add(u.fds[1], u, true); err != nil {
			pl.remove(u.fds[0])
			return err
		}
	}
	u.poller = pl
	return nil
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
		// Alone on the port, it is our RTCP port too: where the RTCP
		// comes from is where ours goes (rtcpRoute).
		u.handleRTCP(pkt, from, u.single)
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
	return u.sendTo(rtpSocket, pkt, *r)
}

// The transport's two sockets, for sendTo.
const (
	rtpSocket  = 0
	rtcpSocket = 1
)

// sendTo sends pkt to to from the RTP or the RTCP socket: a raw
// sendto(2) on a polled transport (a full send buffer drops the packet),
// else through the net.UDPConn.
func (u *UDP) sendTo(sock int, pkt []byte, to netip.AddrPort) error {
	if !u.raw {
		c := u.conn
		if sock == rtcpSocket {
			c = u.rtcpConn
		}
		_, err := c.WriteToUDPAddrPort(pkt, to)
		return err
	}
	if !u.fdUsers.acquire() {
		return ErrClosed
	}
	err := rawSendTo(u.fds[sock], u.v6, pkt, to)
	u.fdUsers.release()
	return err
}

// rtcpRoute says which socket RTCP leaves from and where it goes: the
// RTP socket with rtcp-mux; else the RTCP socket, to the port the peer's
// RTCP came from (unless a re-INVITE moved the peer), or the peer's
// a=rtcp port, or the RTP port + 1.
func (u *UDP) rtcpRoute() (int, netip.AddrPort, bool) {
	r := u.remote.Load()
	if r == nil || !r.IsValid() || r.Addr().IsUnspecified() {
		return 0, netip.AddrPort{}, false
	}
	to := *r
	p := u.peer.Load()
	if p != nil && p.RTCPMux {
		return rtpSocket, to, true
	}
	sock := rtcpSocket
	if u.single {
		sock = rtpSocket
	}
	u.rtcpMu.Lock()
	dest := u.rtcpDest
	u.rtcpMu.Unlock()
	switch {
	case dest.IsValid() && dest.Addr() == to.Addr(): // not stale after a re-INVITE moved the peer
		return sock, dest, true
	case p != nil && p.RemoteRTCP.IsValid():
		return sock, p.RemoteRTCP, true
	case to.Port() < 65535:
		return sock, netip.AddrPortFrom(to.Addr(), to.Port()+1), true
	}
	return 0, netip.AddrPort{}, false
}

// WriteRTCP sends a compound RTCP packet (see rtcpRoute).
func (u *UDP) WriteRTCP(pkt []byte) error {
	sock, to, ok := u.rtcpRoute()
	if !ok {
		return ErrNoPeer
	}
	return u.sendTo(sock, pkt, to)
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
	u.mu.Unlock()
	close(u.done)
	if u.raw {
		// Out of the poller's hands (parked there, dropping what
		// arrives, or removed), and no send in flight, before the pool
		// keeps or closes the sockets: their numbers may be reused at
		// once.
		parked := u.parkedIn // never started: still parked where it was kept
		if u.poller != nil {
			if u.poller.park(u.fds) {
				parked = u.poller
			} else {
				u.poller.remove(u.fds[0])
				u.poller.remove(u.fds[1])
			}
		}
		u.fdUsers.closeWait()
		// Nobody reads (for this transport) or writes the sockets any
		// more: the pool may keep them bound for the port's next call
		// (KeepSockets).
		u.pool.releaseRawPair(u.port, u.fds, u.v6, u.local.Addr(), parked)
		return nil
	}
	// Reader goroutines return when their sockets close.
	err := u.conn.Close()
	if u.rtcpConn != nil {
		u.rtcpConn.Close()
	}
	u.wg.Wait()
	u.pool.Release(u.port)
	return err
}

// fdGuard keeps raw descriptors from being closed under a send in flight
// (a reused number would send into another socket): senders hold it for
// one sendto, and closeWait stops new ones and waits for the rest. Cost:
// two atomic adds per send.
type fdGuard struct{ n atomic.Int64 }

const fdClosing = 1 << 40

func (g *fdGuard) acquire() bool {
	if g.n.Add(1) >= fdClosing {
		g.n.Add(-1)
		return false
	}
	return true
}

func (g *fdGuard) release() { g.n.Add(-1) }

// closeWait refuses new senders and returns when none is left. A sender
// holds the guard for one non-blocking sendto, so the wait is a few
// microseconds at most.
func (g *fdGuard) closeWait() {
	g.n.Add(fdClosing)
	for g.n.Load() != fdClosing {
		time.Sleep(10 * time.Microsecond)
	}
}
