package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// ErrNoBrowser is returned by Dial when the user has no browser logged
// in; ErrDeclined when every browser of the user declined.
var (
	ErrNoBrowser = errors.New("bridge: the user has no browser logged in")
	ErrDeclined  = errors.New("bridge: declined in the browser")
)

// incoming is a call offered to a user's browsers: the first to answer
// takes it.
type incoming struct {
	leg      *Leg
	mu       sync.Mutex
	asked    int
	declined int
	answer   chan incomingAnswer
}

type incomingAnswer struct {
	s   *session
	sdp string
}

// Dial rings every browser logged in as user with a call from from (a
// display string), and returns the leg of the first that answers. It
// returns ErrNoBrowser at once when none is logged in, ErrDeclined when
// all decline, ctx's error when it ends first.
func (b *Bridge) Dial(ctx context.Context, user, from string) (*Leg, error) {
	var sessions []*session
	b.mu.Lock()
	for s := range b.sessions {
		if s.claims.User == user {
			sessions = append(sessions, s)
		}
	}
	b.mu.Unlock()
	if len(sessions) == 0 {
		return nil, ErrNoBrowser
	}
	id := newID("wr-")
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{ICEServers: b.cfg.ICEServers})
	if err != nil {
		return nil, fmt.Errorf("bridge: peer connection: %w", err)
	}
	l := &Leg{b: b, id: id, user: user, from: from, pc: pc, owner: user, outbound: true,
		log: b.log.With("leg_id", id, "user", user), done: make(chan struct{})}
	l.sessPtr.Store(sessions[0])
	fail := func(err error) (*Leg, error) {
		_ = pc.Close()
		return nil, err
	}
	// The track's codec is our first: Opus when libopus is there (every
	// browser has it), else PCMU.
	capability := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
	if opus := b.opusCapability(); opus != nil {
		capability = *opus
	}
	if l.track, err = webrtc.NewTrackLocalStaticRTP(capability, "audio", "switchboard"); err != nil {
		return fail(err)
	}
	tr, err := pc.AddTransceiverFromTrack(l.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		return fail(fmt.Errorf("bridge: track: %w", err))
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Sender().Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			init := c.ToJSON()
			l.sess().send(Message{Type: "ice", Call: id, Candidate: &init})
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-time.After(time.Second):
	}
	inc := &incoming{leg: l, asked: len(sessions), answer: make(chan incomingAnswer, len(sessions))}
	b.mu.Lock()
	b.ringing[id] = inc
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.ringing, id)
		b.mu.Unlock()
	}()
	sdp := pc.LocalDescription().SDP
	for _, s := range sessions {
		s.send(Message{Type: "incoming", Call: id, User: from, SDP: sdp})
	}
	l.log.Info("bridge: ringing the user's browsers", "browsers", len(sessions), "from", from)
	cancelOthers := func(winner *session) {
		for _, s := range sessions {
			if s != winner {
				s.send(Message{Type: "hangup", Call: id, Cause: "answered elsewhere"})
			}
		}
	}
	select {
	case a := <-inc.answer:
		if a.s == nil { // every browser declined
			return fail(ErrDeclined)
		}
		cancelOthers(a.s)
		l.sessPtr.Store(a.s)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: a.sdp}); err != nil {
			a.s.send(Message{Type: "hangup", Call: id, Cause: "bad answer"})
			return fail(fmt.Errorf("bridge: the browser's answer: %w", err))
		}
		codecs := tr.Sender().GetParameters().Codecs
		if len(codecs) == 0 || codecs[0].MimeType != capability.MimeType {
			a.s.send(Message{Type: "hangup", Call: id, Cause: "no common codec"})
			return fail(errors.New("bridge: the browser did not take our codec"))
		}
		if err := l.startMedia(codecs); err != nil {
			return fail(err)
		}
		l.mu.Lock()
		l.answerSent, l.answered = true, true
		l.mu.Unlock()
		a.s.mu.Lock()
		a.s.legs[id] = l
		a.s.mu.Unlock()
		b.remember(l)
		l.feed("", 0)
		return l, nil
	case <-ctx.Done():
		cancelOthers(nil)
		return fail(ctx.Err())
	}
}

// opusCapability is Opus's capability when the media engine has it.
func (b *Bridge) opusCapability() *webrtc.RTPCodecCapability {
	if !b.opus {
		return nil
	}
	return &webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
}

// answered is a browser's answer (or decline, sdp "") to a call it was
// offered.
func (b *Bridge) answered(s *session, id, sdp string) bool {
	b.mu.Lock()
	inc := b.ringing[id]
	b.mu.Unlock()
	if inc == nil {
		return false
	}
	inc.mu.Lock()
	defer inc.mu.Unlock()
	if sdp != "" {
		select {
		case inc.answer <- incomingAnswer{s: s, sdp: sdp}:
		default:
		}
		return true
	}
	inc.declined++
	if inc.declined == inc.asked {
		inc.answer <- incomingAnswer{}
	}
	return true
}
