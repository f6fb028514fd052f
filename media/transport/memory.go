package transport

import "sync"

// PacketSink takes inbound packets pushed by a PacketTransport's owner
// (media.Endpoint.ReceivePacket is one).
type PacketSink interface {
	ReceivePacket(pkt []byte)
}

// MemoryLink is a PacketTransport that delivers to a PacketSink in
// memory, in order, through a bounded queue on its own goroutine — a
// perfect network for tests and for legs that live in the same process.
type MemoryLink struct {
	mu     sync.Mutex
	peer   PacketSink
	q      chan []byte
	free   chan []byte
	closed bool
	done   chan struct{}
}

// memoryLinkDepth is how many packets a MemoryLink holds before dropping.
const memoryLinkDepth = 64

// NewMemoryLink starts a link; Connect says where its packets go. Close
// it when done.
func NewMemoryLink() *MemoryLink {
	l := &MemoryLink{q: make(chan []byte, memoryLinkDepth), free: make(chan []byte, memoryLinkDepth), done: make(chan struct{})}
	go l.run()
	return l
}

// Connect makes peer the receiver of the packets written to l.
func (l *MemoryLink) Connect(peer PacketSink) {
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
