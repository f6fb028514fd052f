package media

import "github.com/switchboard-voice/switchboard/media/transport"

// NewPacketEndpoint makes an endpoint whose packets t carries — a WebRTC
// track (pion owns ICE, DTLS and SRTP), another node's link, or memory in
// tests: nothing is bound, no port is used, and there is no latching or
// send gating (the carrier has proven the peer). Inbound packets are
// handed to ReceivePacket. Configure (Remote, RTCP and SRTP settings are
// ignored) and Start it like any endpoint.
func NewPacketEndpoint(t transport.PacketTransport, opts EndpointOptions) *Endpoint {
	e := NewStream(transport.Packet(t), opts)
	e.packet = true
	return e
}

// ReceivePacket hands the endpoint one inbound RTP or RTCP packet (told
// apart by RFC 5761's rule) from a packet transport. One goroutine at a
// time may call it; pkt may be rewritten in place (passthrough forwarding
// reuses it) and is not kept. Cost: what a UDP transport's reader does per
// datagram, without the syscall. Endpoints on other transports ignore it.
func (e *Endpoint) ReceivePacket(pkt []byte) {
	if !e.packet || e.isClosed.Load() {
		return
	}
	if transport.IsRTCP(pkt) {
		e.receiveRTCP(pkt)
		return
	}
	e.receiveRTP(pkt)
}

// NewMemoryPair makes two packet endpoints joined by MemoryLinks, the way
// two phones on a perfect network would be. Close the endpoints, then
// the links (returned so tests can close them), when done.
func NewMemoryPair(opts EndpointOptions) (a, b *Endpoint, links [2]*transport.MemoryLink) {
	ab, ba := transport.NewMemoryLink(), transport.NewMemoryLink()
	a = NewPacketEndpoint(ab, opts)
	b = NewPacketEndpoint(ba, opts)
	ab.Connect(b)
	ba.Connect(a)
	return a, b, [2]*transport.MemoryLink{ab, ba}
}
