// Package transport carries the packets of a media stream. A stream
// (media.Endpoint: codec state, jitter buffer, the 20 ms tick, sources,
// sinks, DTMF, statistics, passthrough forwarding) never touches a socket;
// it writes RTP and RTCP packets to a Transport and is handed what
// arrives through a Receiver.
//
// Implementations: UDP (a port pair from a PortPool, read by a poller or
// reader goroutines, with symmetric latching, strict source locking, send
// gating and the RTCP socket), SRTP (a wrapper that protects what another
// transport carries), and Packet, which adapts any PacketTransport — a
// WebRTC track, a MemoryLink in tests — whose owner pushes inbound
// packets into the stream itself.
//
// The package knows nothing of frames, codecs or streams, so the stream
// package builds on it and not the other way round.
package transport

import (
	"errors"
	"net/netip"
)

// PacketTransport is the narrowest carrier of a stream's packets: it
// takes what the stream sends. Whoever owns it hands inbound packets to
// the stream (media.Endpoint.ReceivePacket).
//
// WriteRTP and WriteRTCP are called on the media path (a Pacer shard or a
// forwarding endpoint's reader): they must not block, may drop, and must
// not keep pkt after returning.
type PacketTransport interface {
	WriteRTP(pkt []byte) error
	WriteRTCP(pkt []byte) error
}

// Receiver takes the packets a Transport reads. Exactly one goroutine at
// a time calls it for one transport; pkt may be rewritten in place (the
// stream forwards it) and must not be kept.
type Receiver interface {
	// ReceiveRTP handles one RTP packet and reports whether it was a
	// well-formed packet of the stream. A refused packet (malformed, or
	// failing SRTP authentication) never latches the transport's source.
	ReceiveRTP(pkt []byte) bool
	// ReceiveRTCP handles one compound RTCP packet and reports whether it
	// was accepted; only an accepted one from the RTCP port steers where
	// our RTCP goes.
	ReceiveRTCP(pkt []byte) bool
}

// Transport carries one stream's packets both ways: what the stream
// writes goes to the peer, and what arrives from the peer is handed to
// the Receiver given to Start.
type Transport interface {
	PacketTransport
	// LocalAddr is where the peer should send RTP (zero when the carrier
	// has no address of its own, as with WebRTC).
	LocalAddr() netip.AddrPort
	// SetPeer applies what signaling negotiated about the far end. It may
	// be called again (re-INVITE): a changed remote address un-latches.
	SetPeer(p Peer)
	// Start begins delivering inbound packets to r. Call once.
	Start(r Receiver)
	// Verify records that the peer proved it wants our packets (see
	// UDPOptions.UnverifiedBudget); Verified reports it.
	Verify()
	Verified() bool
	// Stats returns the transport's own counters.
	Stats() Stats
	// Close stops reading and releases what the transport holds (socket,
	// port). When it returns the Receiver is not called again.
	Close() error
}

// Peer is what signaling says about the far end of a stream.
type Peer struct {
	// Remote is where RTP goes until symmetric RTP latches onto the
	// address the peer actually sends from.
	Remote netip.AddrPort
	// RTCPMux sends RTCP on the RTP port (RFC 5761). RTCP arriving on
	// either port is read either way.
	RTCPMux bool
	// RemoteRTCP is where RTCP goes without rtcp-mux until the peer's
	// RTCP latches it; zero means Remote's port + 1.
	RemoteRTCP netip.AddrPort
	// NATSource is the IP address the peer's signaling came from. When
	// Remote is a private address, RTP from NATSource may latch too, but
	// only within UDPOptions.NATLatchWindow of SetPeer.
	NATSource netip.Addr
	// SRTP, when set, protects the stream (SRTP wrapper); nil is plain RTP.
	SRTP *SRTPKeys
}

// Stats are a transport's own counters; a stream adds them to its own.
type Stats struct {
	// Dropped counts RTP packets refused by the transport: from an
	// unexpected source, or failing SRTP authentication.
	Dropped uint64
	// RTCPDropped is Dropped for RTCP.
	RTCPDropped uint64
	// SRTPAuthFailures counts SRTP and SRTCP packets that failed
	// authentication (also in Dropped or RTCPDropped).
	SRTPAuthFailures uint64
	// Unsent counts RTP packets withheld because the peer had not proven
	// that it wants them.
	Unsent uint64
}

// Add returns the sum of s and o.
func (s Stats) Add(o Stats) Stats {
	return Stats{Dropped: s.Dropped + o.Dropped, RTCPDropped: s.RTCPDropped + o.RTCPDropped,
		SRTPAuthFailures: s.SRTPAuthFailures + o.SRTPAuthFailures, Unsent: s.Unsent + o.Unsent}
}

// ErrNoPeer is returned by a write with nowhere to send (no remote
// address yet, or the peer is on hold at 0.0.0.0 for RTCP).
var ErrNoPeer = errors.New("transport: no peer address")

// ErrWithheld is returned by a write the send gating held back (the peer
// has not proven it wants our packets and its budget is spent).
var ErrWithheld = errors.New("transport: withheld until the peer is verified")

// ErrClosed is returned by writes to a closed transport.
var ErrClosed = errors.New("transport: closed")

// IsRTCP reports whether a datagram on a multiplexed port is RTCP: RFC
// 5761 section 4 tells them apart by the second octet, 192–223 for RTCP
// (which covers the SR, RR, SDES, BYE, APP, RTPFB and PSFB types 200–206).
func IsRTCP(b []byte) bool {
	return len(b) >= 2 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// Packet adapts a PacketTransport to a Transport: writes go to pt, there
// is no address, latching or gating (the carrier — ICE and DTLS for
// WebRTC — has proven the peer), and the owner of pt pushes inbound
// packets into the stream itself. Cost: one interface call per packet.
func Packet(pt PacketTransport) Transport { return packetTransport{pt} }

type packetTransport struct{ PacketTransport }

func (packetTransport) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (packetTransport) SetPeer(Peer)              {}
func (packetTransport) Start(Receiver)            {}
func (packetTransport) Verify()                   {}
func (packetTransport) Verified() bool            { return true }
func (packetTransport) Stats() Stats              { return Stats{} }
func (packetTransport) Close() error              { return nil }
