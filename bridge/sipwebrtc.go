package bridge

import (
	"errors"
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
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
		return fail(fmt.Errorf("bridge: the offer: %w", err))
	}
	var tr *webrtc.RTPTransceiver
	for _, t := range pc.GetTransceivers() {
		if t.Kind() == webrtc.RTPCodecTypeAudio {
			tr = t
			break
		}
	}
	if tr == nil {
		return fail(errors.New("bridge: the offer has no audio"))
	}
	codecs := tr.Receiver().GetParameters().Codecs
	if len(codecs) == 0 {
		return fail(errors.New("bridge: no common audio codec"))
	}
	if l.track, err = webrtc.NewTrackLocalStaticRTP(codecs[0].RTPCodecCapability, "audio", "switchboard"); err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(l.track)
	if err != nil {
		return fail(fmt.Errorf("bridge: track: %w", err))
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	sdp, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("bridge: answer: %w", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(sdp); err != nil {
		return fail(fmt.Errorf("bridge: answer: %w", err))
	}
	select {
	case <-gathered:
	case <-time.After(2 * time.Second):
	}
	if err := l.startMedia(codecs); err != nil {
		return fail(err)
	}
	l.log.Info("bridge: answered a WebRTC offer from SIP", "codec", codecs[0].MimeType)
	return l.ep, []byte(pc.LocalDescription().SDP), func() { l.end(ErrLocalHangup) }, nil
}
