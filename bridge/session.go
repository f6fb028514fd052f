package bridge

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gobwas/ws"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/media"
)

// ProtocolVersion is the version of the /ws JSON protocol
// (docs/protocol.md).
const ProtocolVersion = 1

// MaxFrame is the largest WebSocket message a browser may send; larger
// ones close the socket with 1009.
const MaxFrame = 64 << 10

// Message is one JSON message of the /ws protocol, either way. Type says
// which fields matter (docs/protocol.md).
type Message struct {
	Type      string                   `json:"type"`
	ID        string                   `json:"id,omitempty"`   // the client's request id, echoed in the reply
	Call      string                   `json:"call,omitempty"` // the call (leg) id
	Token     string                   `json:"token,omitempty"`
	User      string                   `json:"user,omitempty"`
	To        string                   `json:"to,omitempty"`
	SDP       string                   `json:"sdp,omitempty"`
	Candidate *webrtc.ICECandidateInit `json:"candidate,omitempty"`
	Digit     string                   `json:"digit,omitempty"`
	Text      string                   `json:"text,omitempty"`
	Code      int                      `json:"code,omitempty"`
	Cause     string                   `json:"cause,omitempty"`
	Error     string                   `json:"error,omitempty"`
	Version   int                      `json:"version,omitempty"`
	Seq       uint64                   `json:"seq,omitempty"`     // an event's sequence number in its session; for resume and watch, the last one seen
	Session   string                   `json:"session,omitempty"` // a session: a call ID, or "room:NAME"
	Leg       string                   `json:"leg,omitempty"`     // moved: the leg's ID in the session's events
	Status    string                   `json:"status,omitempty"`  // presence: offline, available, ringing, on-call, away
	Event     json.RawMessage          `json:"event,omitempty"`
}

// session is one browser's WebSocket.
type session struct {
	b      *Bridge
	conn   net.Conn
	claims Claims
	wmu    sync.Mutex // one writer at a time

	mu      sync.Mutex
	legs    map[string]*Leg
	watches map[string]*watch // by session
	closed  bool
	done    chan struct{}
}

// Handler is the /ws endpoint: an upgrade to WebSocket, then the JSON
// protocol. Origins other than the page's own are refused with 403.
func (b *Bridge) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.checkOrigin(r) {
			b.log.Warn("bridge: WebSocket from a foreign Origin refused", "origin", r.Header.Get("Origin"), "source", r.RemoteAddr)
			http.Error(w, "forbidden origin", http.StatusForbidden)
			return
		}
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			b.log.Info("bridge: WebSocket upgrade failed", "error", err, "source", r.RemoteAddr)
			return
		}
		s := &session{b: b, conn: conn, legs: map[string]*Leg{}, watches: map[string]*watch{}, done: make(chan struct{})}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			conn.Close()
			return
		}
		b.sessions[s] = struct{}{}
		b.mu.Unlock()
		go s.run()
	})
}

// run reads the socket until it closes, then ends the session's calls.
func (s *session) run() {
	defer func() {
		s.close("socket closed")
		s.b.mu.Lock()
		delete(s.b.sessions, s)
		s.b.mu.Unlock()
	}()
	go s.heartbeat()
	deadline := time.Now().Add(s.b.cfg.HelloTimeout)
	for {
		if s.claims.User != "" {
			deadline = time.Now().Add(3 * s.b.cfg.Heartbeat)
		}
		_ = s.conn.SetReadDeadline(deadline)
		hdr, err := ws.ReadHeader(s.conn)
		if err != nil {
			if s.claims.User == "" && isTimeout(err) {
				s.fail(4001, "no hello in time")
			}
			return
		}
		if hdr.Length > MaxFrame {
			s.b.log.Warn("bridge: WebSocket message too large", "bytes", hdr.Length, "user", s.claims.User)
			s.closeWith(ws.StatusMessageTooBig, "message too large")
			return
		}
		payload := make([]byte, hdr.Length)
		if _, err := io.ReadFull(s.conn, payload); err != nil {
			return
		}
		if hdr.Masked {
			ws.Cipher(payload, hdr.Mask, 0)
		}
		switch hdr.OpCode {
		case ws.OpClose:
			return
		case ws.OpPing:
			s.writeFrame(ws.NewPongFrame(payload))
			continue
		case ws.OpPong:
			continue
		case ws.OpText:
			if !hdr.Fin {
				s.closeWith(ws.StatusUnsupportedData, "fragmented messages are not supported")
				return
			}
		default:
			s.closeWith(ws.StatusUnsupportedData, "text frames only")
			return
		}
		var m Message
		if err := json.Unmarshal(payload, &m); err != nil {
			s.b.badInput("bridge: malformed JSON from a browser", "user", s.claims.User, "error", err)
			s.send(Message{Type: "error", Code: 400, Error: "malformed JSON"})
			continue
		}
		if !s.handle(m) {
			return
		}
	}
}

// isTimeout reports whether err is a read deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// heartbeat pings the socket until the session ends.
func (s *session) heartbeat() {
	t := time.NewTicker(s.b.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.writeFrame(ws.NewPingFrame(nil))
		}
	}
}

// handle runs one message; false closes the socket.
func (s *session) handle(m Message) bool {
	if s.claims.User == "" && m.Type != "hello" {
		s.fail(4001, "hello first")
		return false
	}
	switch m.Type {
	case "hello":
		c, err := s.b.cfg.Tokens.Verify(m.Token, time.Now())
		if err != nil {
			s.b.log.Info("bridge: WebSocket login refused", "error", err, "source", s.conn.RemoteAddr().String())
			s.fail(4003, err.Error())
			return false
		}
		s.b.mu.Lock() // other goroutines read claims under the bridge's lock
		s.claims = c
		s.b.mu.Unlock()
		s.send(Message{Type: "welcome", ID: m.ID, User: c.User, Version: ProtocolVersion})
		if online := s.b.cfg.Online; online != nil {
			online(c.User, s.b.sockets(c.User, nil))
		}
		if roster := s.b.cfg.Roster; roster != nil {
			for _, p := range roster() { // the roster as it is; changes follow
				s.send(p)
			}
		}
	case "call":
		if m.To == "" || m.SDP == "" {
			s.send(Message{Type: "error", ID: m.ID, Code: 400, Error: "call needs to and sdp"})
			return true
		}
		if !s.claims.MayCall(m.To) {
			s.send(Message{Type: "error", ID: m.ID, Code: 403, Error: "the token does not allow calling " + m.To})
			return true
		}
		id := newID("wr-")
		leg, answer, err := s.b.newLeg(s, id, m.To, m.SDP)
		if err != nil {
			s.b.log.Info("bridge: browser call refused", "error", err, "user", s.claims.User)
			s.send(Message{Type: "error", ID: m.ID, Code: 488, Error: err.Error()})
			return true
		}
		s.mu.Lock()
		s.legs[id] = leg
		s.mu.Unlock()
		s.b.remember(leg)
		s.send(Message{Type: "answer", ID: m.ID, Call: id, SDP: answer})
		leg.sentAnswer()
		if s.b.cfg.OnCall != nil {
			s.b.cfg.OnCall(leg)
		}
		leg.feed("", 0)
	case "resume":
		// A new socket takes over a call of this user's whose socket
		// dropped: media went on; events resume after the last one seen
		// (of m.Session, the session the browser last had events of).
		l := s.b.leg(m.Call)
		if l == nil || l.owner != s.claims.User || l.Err() != nil {
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 404, Error: "no such call to resume"})
			return true
		}
		if !validSession(m.Session, true) {
			s.b.badInput("bridge: bad session in resume", "user", s.claims.User, "bytes", len(m.Session))
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 400, Error: "bad session"})
			return true
		}
		old := l.sessPtr.Swap(s)
		if old != nil && old != s {
			old.forget(l.id)
		}
		s.mu.Lock()
		s.legs[l.id] = l
		s.mu.Unlock()
		s.send(Message{Type: "resumed", ID: m.ID, Call: l.id, Session: m.Session})
		l.feed(m.Session, m.Seq)
	case "watch":
		s.watch(m)
	case "unwatch":
		if !s.unwatch(m.Session) {
			s.send(Message{Type: "error", ID: m.ID, Session: truncate(m.Session, 64), Code: 404, Error: "not watching that session"})
			return true
		}
		s.send(Message{Type: "unwatched", ID: m.ID, Session: m.Session})
	case "offer":
		// A new offer in a call: the browser renegotiates (ICE restart
		// after a network change).
		l := s.leg(m.Call)
		if l == nil || m.SDP == "" {
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 481, Error: "no such call"})
			return true
		}
		answer, err := l.renegotiate(m.SDP)
		if err != nil {
			s.b.log.Info("bridge: renegotiation refused", "leg_id", l.id, "error", err)
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 488, Error: err.Error()})
			return true
		}
		s.send(Message{Type: "answer", ID: m.ID, Call: m.Call, SDP: answer})
	case "answer":
		// The browser takes a call it was offered (incoming).
		if m.SDP == "" || !s.b.answered(s, m.Call, m.SDP) {
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 481, Error: "no such call ringing"})
		}
	case "reject":
		s.b.answered(s, m.Call, "")
	case "ice":
		if l := s.leg(m.Call); l != nil && m.Candidate != nil {
			if err := l.pc.AddICECandidate(*m.Candidate); err != nil {
				s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 400, Error: "bad candidate"})
			}
		}
	case "hangup":
		if l := s.leg(m.Call); l != nil {
			l.end(ErrRemoteHangup)
		}
	case "dtmf":
		if l := s.leg(m.Call); l != nil {
			for _, d := range m.Digit {
				if ev, ok := dtmfEvent(d); ok {
					l.ep.InjectDTMF(ev)
				}
			}
		}
	case "chat":
		if l := s.leg(m.Call); l != nil && len(m.Text) <= 4096 {
			l.chat(m.Text)
		}
	case "mute", "unmute":
		if l := s.leg(m.Call); l != nil && s.b.cfg.Control != nil {
			s.b.cfg.Control(l.id, m.Type, "", nil)
		}
	case "hold", "unhold":
		if l := s.leg(m.Call); l != nil {
			l.hold(m.Type == "hold")
		}
	case "signal":
		if l := s.leg(m.Call); l != nil && s.b.cfg.Control != nil && m.Text != "" && len(m.Event) <= 8<<10 {
			s.b.cfg.Control(l.id, "signal", m.Text, m.Event)
		} else {
			s.send(Message{Type: "error", ID: m.ID, Call: m.Call, Code: 400, Error: "signal needs a call, a name (text) and at most 8 KiB of event"})
		}
	case "presence":
		if set := s.b.cfg.SetState; set != nil {
			if err := set(s.claims.User, m.Status, m.Text); err != nil {
				s.send(Message{Type: "error", ID: m.ID, Code: 400, Error: err.Error()})
			}
		}
	case "ping":
		s.send(Message{Type: "pong", ID: m.ID})
	default:
		s.send(Message{Type: "error", ID: m.ID, Code: 400, Error: "unknown message type " + truncate(m.Type, 40)})
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (s *session) leg(id string) *Leg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[id]
}

func (s *session) forget(id string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.legs, id)
	s.mu.Unlock()
}

// send writes one message; errors end the session through the reader.
func (s *session) send(m Message) {
	if s == nil { // a leg without a socket (its signaling is SIP)
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	s.writeFrame(ws.NewTextFrame(b))
}

func (s *session) writeFrame(f ws.Frame) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ws.WriteFrame(s.conn, f); err != nil {
		// A socket that takes nothing for 5 s (or broke) is closed: a
		// half-written frame cannot be followed by another.
		_ = s.conn.Close()
	}
}

// fail sends an error frame and closes with a 4xxx code.
func (s *session) fail(code int, why string) {
	s.send(Message{Type: "error", Code: code, Error: why})
	s.closeWith(ws.StatusCode(code), why)
}

func (s *session) closeWith(code ws.StatusCode, why string) {
	s.writeFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, why)))
	// Half-close and drain (bounded) what the client is still sending, so
	// the close frame is read rather than lost to a reset.
	if tc, ok := s.conn.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(s.conn, 2*MaxFrame+(1<<20)))
	}
	_ = s.conn.Close()
}

// close ends the session's calls and the socket, once.
func (s *session) close(cause string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	legs := make([]*Leg, 0, len(s.legs))
	for _, l := range s.legs {
		legs = append(legs, l)
	}
	for _, w := range s.watches {
		w.cancel()
	}
	s.watches = nil
	s.mu.Unlock()
	close(s.done)
	_ = s.conn.Close()
	if online := s.b.cfg.Online; online != nil && s.claims.User != "" {
		online(s.claims.User, s.b.sockets(s.claims.User, s))
	}
	for _, l := range legs {
		if s.b.cfg.Grace < 0 || cause == "server shutdown" {
			l.end(ErrGone)
			continue
		}
		go l.orphaned(s, s.b.cfg.Grace)
	}
}

// dtmfEvent makes a digit the page sent by message (its keypad) into the
// endpoint's digit event.
func dtmfEvent(d rune) (media.DTMFEvent, bool) {
	d = unicode.ToUpper(d)
	if !strings.ContainsRune("0123456789*#ABCD", d) {
		return media.DTMFEvent{}, false
	}
	return media.DTMFEvent{Digit: d, Duration: 100 * time.Millisecond, Source: "webrtc"}, true
}
