package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// With FramesPerPacket 3 (a peer's a=ptime:60) each packet carries 60 ms:
// 480 PCMU bytes, timestamps 480 apart, consecutive sequence numbers, and
// the audio still decodes to the tone; a DTMF digit flushes a partial
// packet first, so no audio is lost or reordered around it.
func TestEndpointSendsPTime60(t *testing.T) {
	pool, err := transport.NewPortPool(42600, 42699)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	spec := codec.Codecs()[0]
	a.Configure(StreamConfig{Codec: spec, PayloadType: 0, DTMFPayloadType: 101,
		Remote: peer.LocalAddr().(*net.UDPAddr).AddrPort(), FramesPerPacket: 3})
	a.Start()
	a.Play(sine(1000, 2*time.Second, 0), nil)

	buf := make([]byte, 1500)
	var pcm []int16
	var lastSeq uint16
	var lastTS uint32
	audio := 0
	for i := 0; i < 20; i++ {
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if p.PayloadType != 0 {
			continue
		}
		if len(p.Payload) != 480 {
			t.Fatalf("packet %d carries %d bytes, want 480 (60 ms)", i, len(p.Payload))
		}
		if audio > 0 {
			if p.SequenceNumber != lastSeq+1 || p.Timestamp-lastTS != 480 {
				t.Fatalf("packet %d: seq %d after %d, ts step %d, want +1 and 480", i, p.SequenceNumber, lastSeq, p.Timestamp-lastTS)
			}
		}
		lastSeq, lastTS = p.SequenceNumber, p.Timestamp
		pcm = codec.PCMU{}.Decode(pcm, p.Payload)
		audio++
	}
	if f, _ := dsp.DominantFrequency(pcm[480:], 8000, 100, 3800, 10); f < 990 || f > 1010 {
		t.Fatalf("60 ms packets decode to %.1f Hz, want 1000", f)
	}

	// A digit that starts inside a packet: the partial packet goes out
	// first (shorter, but whole frames), then the telephone-events.
	if err := a.SendDTMF('5', 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	sawEvent := false
	for i := 0; i < 30 && !sawEvent; i++ {
		_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		switch {
		case p.PayloadType == 101:
			sawEvent = true
		case len(p.Payload)%160 != 0 || len(p.Payload) == 0 || len(p.Payload) > 480:
			t.Fatalf("audio packet of %d bytes: not whole 20 ms frames", len(p.Payload))
		}
	}
	if !sawEvent {
		t.Fatal("the digit never went out")
	}
}
