package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// Errors a browser leg ends with.
var (
	ErrRemoteHangup = errors.New("remote hangup")
	ErrLocalHangup  = errors.New("local hangup")
	ErrGone         = errors.New("browser gone")
	ErrICEFailed    = errors.New("media connection failed")
)

// Leg is one browser call: a PeerConnection (ICE, DTLS-SRTP and RTCP are
// pion's) whose audio is a media.Endpoint on a packet transport, so the
// framework bridges, mixes, moves, prompts and records it like a phone.
// It has the shape of framework.Signaling.
type Leg struct {
	b              *Bridge
	id, user, from string
	pc             *webrtc.PeerConnection
	track          *webrtc.TrackLocalStaticRTP
	ep             *media.Endpoint
	sessPtr        atomic.Pointer[session] // the socket the leg reports to (it changes on resume)
	owner          string                  // the user whose socket may resume it
	outbound       bool                    // the server called the browser
	log            *slog.Logger

	mu         sync.Mutex
	answerSent bool
	pendingICE []webrtc.ICECandidateInit
	answered   bool
	events     context.CancelFunc // ends the event feed to the socket
	onMedia    func(media.StreamConfig)
	err        error
	done       chan struct{}
	onChat     func(contentType, text string)
}

// trackTransport writes the endpoint's RTP to the browser through pion
// (which sets the negotiated SSRC and payload type and encrypts). RTCP is
// pion's own (its interceptors report on the tracks), so the stream's
// reports are not sent.
type trackTransport struct{ track *webrtc.TrackLocalStaticRTP }

func (t trackTransport) WriteRTP(pkt []byte) error {
	_, err := t.track.Write(pkt)
	return err
}
func (trackTransport) WriteRTCP([]byte) error { return nil }

// newLeg answers a browser's offer: the PeerConnection, the endpoint, and
// the SDP answer (with every host candidate gathered: the browser also
// gets them by trickle).
func (b *Bridge) newLeg(s *session, id, to, offer string) (*Leg, string, error) {
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{ICEServers: b.cfg.ICEServers})
	if err != nil {
		return nil, "", fmt.Errorf("bridge: peer connection: %w", err)
	}
	l := &Leg{b: b, id: id, user: to, from: "sip:" + s.claims.User + "@browser", pc: pc, owner: s.claims.User,
		log: b.log.With("leg_id", id, "user", s.claims.User), done: make(chan struct{})}
	l.sessPtr.Store(s)
	fail := func(err error) (*Leg, string, error) {
		_ = pc.Close()
		return nil, "", err
	}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		init := c.ToJSON()
		l.mu.Lock()
		if !l.answerSent { // the browser needs the answer first
			l.pendingICE = append(l.pendingICE, init)
			l.mu.Unlock()
			return
		}
		l.mu.Unlock()
		l.sess().send(Message{Type: "ice", Call: id, Candidate: &init})
	})
	codecs, track, err := answerPeer(pc, offer, time.Second)
	if err != nil {
		return fail(err)
	}
	l.track = track
	if err := l.startMedia(codecs); err != nil {
		return fail(err)
	}
	l.log.Info("bridge: browser call", "to", to, "codec", codecs[0].MimeType)
	return l, pc.LocalDescription().SDP, nil
}

// answerPeer answers an offer on pc: our track, of the offer's first
// codec we support, on its audio transceiver, and the answer set, with
// the host candidates gathered (at most wait). It returns the negotiated
// codecs (the audio codec first) and the track.
func answerPeer(pc *webrtc.PeerConnection, offer string, wait time.Duration) ([]webrtc.RTPCodecParameters, *webrtc.TrackLocalStaticRTP, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, nil, fmt.Errorf("bridge: the offer: %w", err)
	}
	var tr *webrtc.RTPTransceiver
	for _, t := range pc.GetTransceivers() {
		if t.Kind() == webrtc.RTPCodecTypeAudio {
			tr = t
			break
		}
	}
	if tr == nil {
		return nil, nil, errors.New("bridge: the offer has no audio")
	}
	codecs := tr.Receiver().GetParameters().Codecs
	if len(codecs) == 0 {
		return nil, nil, errors.New("bridge: no common audio codec")
	}
	track, err := webrtc.NewTrackLocalStaticRTP(codecs[0].RTPCodecCapability, "audio", "switchboard")
	if err != nil {
		return nil, nil, err
	}
	sender, err := pc.AddTrack(track) // takes the offer's audio transceiver
	if err != nil {
		return nil, nil, fmt.Errorf("bridge: track: %w", err)
	}
	go func() { // pion's interceptors read the browser's RTCP through the sender
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bridge: answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return nil, nil, fmt.Errorf("bridge: answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(wait):
	}
	return codecs, track, nil
}

// startMedia makes the leg's stream for the negotiated codecs (the first
// is the audio codec; telephone-event at its clock, if any) and starts
// reading what the browser sends.
func (l *Leg) startMedia(codecs []webrtc.RTPCodecParameters) error {
	audio := codecs[0]
	name := strings.TrimPrefix(strings.ToLower(audio.MimeType), "audio/")
	spec, ok := codec.LookupCodec(strings.ToUpper(name), int(audio.ClockRate))
	if !ok {
		spec, ok = codec.LookupCodec(name, int(audio.ClockRate))
	}
	if !ok {
		return fmt.Errorf("bridge: negotiated codec %s/%d is not ours", audio.MimeType, audio.ClockRate)
	}
	var dtmfPT uint8
	for _, c := range codecs {
		if strings.EqualFold(c.MimeType, "audio/telephone-event") && c.ClockRate == audio.ClockRate {
			dtmfPT = uint8(c.PayloadType)
		}
	}
	b := l.b
	l.ep = media.NewPacketEndpoint(trackTransport{l.track}, media.EndpointOptions{Pacer: b.cfg.Pacer, Logger: l.log,
		MediaTimeout: b.cfg.MediaTimeout, OnMediaTimeout: func() { l.end(ErrGone) }})
	l.ep.Configure(media.StreamConfig{Codec: spec, PayloadType: uint8(audio.PayloadType), DTMFPayloadType: dtmfPT})
	l.pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		go l.readTrack(remote)
	})
	l.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		l.log.Debug("bridge: peer connection", "state", st.String())
		if st == webrtc.PeerConnectionStateFailed {
			l.end(ErrICEFailed)
		}
	})
	l.ep.Start()
	return nil
}

// OnMediaUpdate sets the callback told when the browser holds or resumes
// the call (its stream's direction changes).
func (l *Leg) OnMediaUpdate(fn func(media.StreamConfig)) {
	l.mu.Lock()
	l.onMedia = fn
	l.mu.Unlock()
}

// hold puts the call on hold from the browser (nothing sent either way)
// or resumes it, and tells the call's owner.
func (l *Leg) hold(on bool) {
	if l.ep == nil {
		return
	}
	cfg := l.ep.Config()
	cfg.Direction = "sendrecv"
	if on {
		cfg.Direction = "inactive"
	}
	l.ep.Configure(cfg)
	l.mu.Lock()
	fn := l.onMedia
	l.mu.Unlock()
	if fn != nil {
		fn(cfg)
	}
}

// renegotiate answers a new offer in the call (an ICE restart): the
// stream and its codec stay as they are.
func (l *Leg) renegotiate(offer string) (string, error) {
	if err := l.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("bridge: the new offer: %w", err)
	}
	answer, err := l.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("bridge: answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(l.pc)
	if err := l.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("bridge: answer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(time.Second):
	}
	l.log.Info("bridge: browser renegotiated (ICE restart)")
	return l.pc.LocalDescription().SDP, nil
}

// orphaned ends the leg if no socket resumes it within grace.
func (l *Leg) orphaned(from *session, grace time.Duration) {
	l.log.Info("bridge: browser socket dropped; the call waits for it to resume", "grace", grace)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
		if l.sess() == from {
			l.end(ErrGone)
		}
	}
}

// feed (re)starts pushing the session events of the leg's session to
// its socket (Config.Feeds), those after Seq from of session ("": the
// call it placed or is in), following the leg when it is moved; a running
// feed is stopped first.
func (l *Leg) feed(session string, from uint64) {
	feeds := l.b.cfg.Feeds
	if feeds == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.mu.Lock()
	if l.events != nil {
		l.events()
	}
	l.events = cancel
	l.mu.Unlock()
	go func() {
		f, err := feeds.FollowLeg(ctx, l.id, session, from)
		if err != nil {
			if ctx.Err() == nil {
				l.log.Info("bridge: no session events for the call", "session", session, "error", err)
			}
			return
		}
		defer f.Close()
		for {
			it, err := f.Next(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, io.EOF) {
					l.log.Info("bridge: the call's session events stopped", "error", err)
					l.sess().send(Message{Type: "error", Call: l.id, Code: 503, Error: "the session's events cannot be read now"})
				}
				return
			}
			if it.Moved {
				l.sess().send(Message{Type: "moved", Call: l.id, Session: it.Session, Leg: it.Leg})
				continue
			}
			l.sess().send(Message{Type: "event", Call: l.id, Session: it.Session, Seq: it.Seq, Event: it.Event})
		}
	}()
}

// sess is the socket the leg reports to now.
func (l *Leg) sess() *session { return l.sessPtr.Load() }

// answerSent sends the candidates gathered before the browser had our
// answer.
func (l *Leg) sentAnswer() {
	l.mu.Lock()
	l.answerSent = true
	pending := l.pendingICE
	l.pendingICE = nil
	l.mu.Unlock()
	for i := range pending {
		l.sess().send(Message{Type: "ice", Call: l.id, Candidate: &pending[i]})
	}
}

// readTrack feeds what the browser sends into the endpoint until the
// track ends. One goroutine per leg.
func (l *Leg) readTrack(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var hdr rtp.Header
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		if _, err := hdr.Unmarshal(buf[:n]); err != nil {
			continue
		}
		l.ep.ReceivePacket(buf[:n])
	}
}

// ID, Kind, Inbound, User, From and To describe the leg.
func (l *Leg) ID() string    { return l.id }
func (l *Leg) Kind() string  { return "webrtc" }
func (l *Leg) Inbound() bool { return !l.outbound }
func (l *Leg) User() string  { return l.user }
func (l *Leg) From() string  { return l.from }
func (l *Leg) To() string    { return l.user }

// Endpoint is the leg's media stream.
func (l *Leg) Endpoint() *media.Endpoint { return l.ep }

// Done is closed when the leg has ended; Err says why.
func (l *Leg) Done() <-chan struct{} { return l.done }

// Err says why the leg ended (nil while up).
func (l *Leg) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Ringing tells the browser its call rings.
func (l *Leg) Ringing() error {
	l.sess().send(Message{Type: "ringing", Call: l.id})
	return l.Err()
}

// Answer tells the browser the call is answered (media already flows once
// ICE and DTLS are up).
func (l *Leg) Answer(ctx context.Context) error {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	first := !l.answered
	l.answered = true
	l.mu.Unlock()
	if first {
		l.sess().send(Message{Type: "answered", Call: l.id})
	}
	return nil
}

// Reject ends the call with a status for the browser.
func (l *Leg) Reject(code int, reason string) error {
	l.sess().send(Message{Type: "hangup", Call: l.id, Code: code, Cause: reason})
	l.end(ErrLocalHangup)
	return nil
}

// Hangup ends the call from the server's side.
func (l *Leg) Hangup(ctx context.Context) error {
	l.sess().send(Message{Type: "hangup", Call: l.id, Cause: "hangup"})
	l.end(ErrLocalHangup)
	return nil
}

// OnChat sets the callback for chat the browser sends in this call.
func (l *Leg) OnChat(fn func(contentType, text string)) {
	l.mu.Lock()
	l.onChat = fn
	l.mu.Unlock()
}

// SendChat sends text to the browser in this call.
func (l *Leg) SendChat(ctx context.Context, text string) error {
	if err := l.Err(); err != nil {
		return err
	}
	l.sess().send(Message{Type: "chat", Call: l.id, Text: text})
	return nil
}

func (l *Leg) chat(text string) {
	l.mu.Lock()
	fn := l.onChat
	l.mu.Unlock()
	if fn != nil {
		fn("text/plain", text)
	}
}

// end closes the leg once: media, then the peer connection, then Done.
func (l *Leg) end(cause error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	l.err = cause
	l.mu.Unlock()
	_ = l.ep.Close()
	_ = l.pc.Close()
	if s := l.sess(); s != nil {
		s.forget(l.id)
	}
	l.b.forget(l.id)
	l.mu.Lock()
	stop := l.events
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
	close(l.done)
	l.log.Info("bridge: browser call ended", "cause", cause.Error())
}
