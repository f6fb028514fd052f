package media

import (
	"net/netip"
	"sync"
)

// PacketTransport carries an Endpoint's packets when something other than
// the endpoint's own UDP socket moves them: a WebRTC track (pion owns ICE,
// DTLS and SRTP), another node's link, or memory in tests. The endpoint —
// the stream: codec state, jitter buffer, the 20 ms tick, sources, sinks,
// DTMF, statistics, passthrough forwarding — is the same whatever carries
// its packets.
//
// WriteRTP and WriteRTCP are called on the media path (a Pacer shard or a
// forwarding endpoint's reader): they must not block, may drop, and must
// not keep pkt after returning.
type PacketTransport interface {
	WriteRTP(pkt []byte) error
	WriteRTCP(pkt []byte) error
}

// packetPeer stands for the far end of a packet transport where the
// endpoint's code wants a remote address: RFC 5737's TEST-NET-1, to which
// nothing is ever sent (writes go to the transport).
var packetPeer = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, 1}), 9)

// NewPacketEndpoint makes an endpoint whose packets t carries: nothing is
// bound, no port is used. Inbound packets are handed to ReceivePacket.
// Configure (Remote is ignored) and Start it like a UDP endpoint.
func NewPacketEndpoint(t PacketTransport, opts EndpointOptions) *Endpoint {
	opts.UnverifiedBudget = 0 // the carrier (ICE, DTLS) has proven the peer
	e := newStream(opts)
	e.pt = t
	e.rtcp.init(nil, opts.RTCPInterval, e.ssrc)
	r := packetPeer
	e.remote.Store(&r)
	e.latched.Store(true)
	return e
}

// ReceivePacket hands the endpoint one inbound RTP or RTCP packet (told
// apart by RFC 5761's rule) from a packet transport. One goroutine at a
// time may call it; pkt may be rewritten in place (passthrough forwarding
// reuses it) and is not kept. Cost: what a UDP endpoint's reader does per
// datagram, without the syscall.
func (e *Endpoint) ReceivePacket(pkt []byte) {
	if e.pt == nil || e.isClosed.Load() {
		return
	}
	e.handleRTP(pkt, packetPeer)
}

// MemoryLink is a PacketTransport that delivers to another endpoint in
// memory, in order, through a bounded queue on its own goroutine — a
// perfect network for tests and for legs that live in the same process.
type MemoryLink struct {
	mu     sync.Mutex
	peer   *Endpoint
	q      chan []byte
	free   chan []byte
	closed bool
	done   chan struct{}
}

// memoryLinkDepth is how many packets a MemoryLink holds before dropping.
const memoryLinkDepth = 64

// NewMemoryPair makes two packet endpoints joined by MemoryLinks, the way
// two phones on a perfect network would be. Close the endpoints, then
// the links (returned so tests can close them), when done.
func NewMemoryPair(opts EndpointOptions) (a, b *Endpoint, links [2]*MemoryLink) {
	ab, ba := newMemoryLink(), newMemoryLink()
	a = NewPacketEndpoint(ab, opts)
	b = NewPacketEndpoint(ba, opts)
	ab.connect(b)
	ba.connect(a)
	return a, b, [2]*MemoryLink{ab, ba}
}

func newMemoryLink() *MemoryLink {
	l := &MemoryLink{q: make(chan []byte, memoryLinkDepth), free: make(chan []byte, memoryLinkDepth), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *MemoryLink) connect(peer *Endpoint) {
	l.mu.Lock()
	l.peer = peer
	l.mu.Unlock()
}

func (l *MemoryLink) run() {
	defer close(l.done)
	for pkt := range l.q {
		l.mu.Lock()
		peer := l.peer
		l.mu.Unlock()
		if peer != nil {
			peer.ReceivePacket(pkt)
		}
		select {
		case l.free <- pkt[:cap(pkt)]:
		default:
		}
	}
}

func (l *MemoryLink) write(pkt []byte) error {
	var buf []byte
	select {
	case buf = <-l.free:
	default:
		buf = make([]byte, 1500)
	}
	buf = append(buf[:0], pkt...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	select {
	case l.q <- buf:
	default: // full: dropped, as a congested link would
	}
	return nil
}

// WriteRTP queues an RTP packet for the peer.
func (l *MemoryLink) WriteRTP(pkt []byte) error { return l.write(pkt) }

// WriteRTCP queues an RTCP packet for the peer.
func (l *MemoryLink) WriteRTCP(pkt []byte) error { return l.write(pkt) }

// Close stops the link's goroutine; queued packets are delivered first.
func (l *MemoryLink) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.q)
	}
	l.mu.Unlock()
	<-l.done
}
