package bridge

import (
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/media"
)

// AnswerOffer answers a WebRTC SDP offer that arrived by other signaling
// than /ws — a browser SIP library (JsSIP, SIP.js) calling over SIP on
// WebSocket: a peer connection whose audio is the returned stream
// (started), and the SDP answer with every host candidate in it (there is
// no trickle over SIP). close ends the peer connection. The caller owns
// the call's signaling and hangs it up.
func (b *Bridge) AnswerOffer(offer []byte) (ep *media.Endpoint, answer []byte, close func(), err error) {
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{ICEServers: b.cfg.ICEServers})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bridge: peer connection: %w", err)
	}
	id := newID("ws-")
	l := &Leg{b: b, id: id, pc: pc, log: b.log.With("leg_id", id, "signaling", "sip"), done: make(chan struct{})}
	fail := func(err error) (*media.Endpoint, []byte, func(), error) {
		_ = pc.Close()
		return nil, nil, nil, err
	}
	codecs, track, err := answerPeer(pc, string(offer), 2*time.Second) // no trickle over SIP: every host candidate
	if err != nil {
		return fail(err)
	}
	l.track = track
	if err := l.startMedia(codecs); err != nil {
		return fail(err)
	}
	l.log.Info("bridge: answered a WebRTC offer from SIP", "codec", codecs[0].MimeType)
	return l.ep, []byte(pc.LocalDescription().SDP), func() { l.end(ErrLocalHangup) }, nil
}
