package media

import (
	"net/netip"
	"testing"

	"github.com/pion/rtp"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// FuzzReceiveRTP feeds arbitrary datagrams to an endpoint as the packets
// its transport accepted from the peer: header parsing, padding, RFC
// 4733 events, the jitter buffer and forwarding to a bridged endpoint
// must take anything without a panic, and a datagram that is not RTP
// version 2 must be refused (not latched on).
func FuzzReceiveRTP(f *testing.F) {
	pool, err := transport.NewPortPool(42900, 42999)
	if err != nil {
		f.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	in, err := NewEndpoint(pool, ip, EndpointOptions{})
	if err != nil {
		f.Fatal(err)
	}
	defer in.Close()
	out, err := NewEndpoint(pool, ip, EndpointOptions{})
	if err != nil {
		f.Fatal(err)
	}
	defer out.Close()
	c := codec.Codecs()[0]
	discard := netip.AddrPortFrom(ip, 9)
	in.Configure(StreamConfig{Codec: c, PayloadType: 0, DTMFPayloadType: 101, Remote: discard})
	out.Configure(StreamConfig{Codec: c, PayloadType: 0, DTMFPayloadType: 101, Remote: discard})
	in.forward.Store(out)

	audio, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, SSRC: 7}, Payload: make([]byte, 160)}).Marshal()
	event, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101, SequenceNumber: 2, Timestamp: 160, SSRC: 7}, Payload: []byte{5, 0x8a, 0, 160}}).Marshal()
	padded, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, Padding: true, PayloadType: 0, SSRC: 7}, Payload: make([]byte, 20), PaddingSize: 4}).Marshal()
	ext, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, Extension: true, ExtensionProfile: 0xBEDE, PayloadType: 0, SSRC: 7}, Payload: make([]byte, 10)}).Marshal()
	for _, seed := range [][]byte{audio, event, padded, ext, {0x80}, {0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0xbf, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		ok := in.receiveRTP(append([]byte(nil), pkt...))
		if ok && (len(pkt) < 12 || pkt[0]>>6 != 2) {
			t.Fatalf("accepted a datagram that is no RTP v2: % x", pkt)
		}
	})
}
