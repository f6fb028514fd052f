package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxWatches is how many sessions one socket may watch at once; a watch
// beyond it is refused with 429.
const MaxWatches = 16

// MaxSessionID bounds a session ID in a message (a call ID or
// "room:NAME"); a longer one is refused with 400.
const MaxSessionID = 256

// ErrNoSession is what Feeds.Watch returns (wrapped or not) for a session
// that does not exist anywhere it can look.
var ErrNoSession = errors.New("bridge: no such session")

// FeedItem is one thing a Feed hands a browser: an event of Session (its
// Seq and the event as JSON), or, with Moved set, the news that the leg
// followed now belongs to Session, where its ID is Leg (its own ID, or
// the relay leg's when the session is on another node).
type FeedItem struct {
	Session string
	Seq     uint64
	Event   json.RawMessage
	Moved   bool
	Leg     string
}

// Feed is a stream of FeedItems, read in order by one goroutine. Next
// waits for the next item, honouring ctx, and returns io.EOF when the
// stream has ended. Close releases it.
type Feed interface {
	Next(ctx context.Context) (FeedItem, error)
	Close()
}

// Feeds is where browsers' session events come from (the framework
// implements it).
type Feeds interface {
	// FollowLeg streams the events of the session the leg is in, after
	// Seq from of session (a session the leg was in; "" means the call
	// the leg placed, else where it is now), and goes on in the session
	// the leg is moved to, announced by a Moved item.
	FollowLeg(ctx context.Context, legID, session string, from uint64) (Feed, error)
	// Watch streams the events of a session after Seq from; ErrNoSession
	// if no such session is live.
	Watch(ctx context.Context, session string, from uint64) (Feed, error)
}

// watch is one session a socket watches.
type watch struct {
	cancel context.CancelFunc
}

// validSession says whether id may name a session: 1 to MaxSessionID
// bytes of printable UTF-8 ("" too when empty is allowed).
func validSession(id string, empty bool) bool {
	if id == "" {
		return empty
	}
	if len(id) > MaxSessionID || !utf8.ValidString(id) {
		return false
	}
	return !strings.ContainsFunc(id, func(r rune) bool { return !unicode.IsPrint(r) || r == ' ' })
}

// watch starts streaming a session's events to the socket: `watching`,
// then `event` messages carrying the session, until `unwatch`, the
// session's end (`unwatched` with a cause) or the socket's.
func (s *session) watch(m Message) {
	switch {
	case !validSession(m.Session, false):
		s.b.badInput("bridge: bad watch refused", "user", s.claims.User, "bytes", len(m.Session))
		s.send(Message{Type: "error", ID: m.ID, Code: 400, Error: "watch needs a session: a call ID or room:NAME, at most 256 printable bytes"})
		return
	case !s.claims.MayWatch(m.Session):
		s.b.badInput("bridge: watch not allowed by the token", "user", s.claims.User, "session", m.Session)
		s.send(Message{Type: "error", ID: m.ID, Session: m.Session, Code: 403, Error: "the token does not allow watching " + m.Session})
		return
	case s.b.cfg.Feeds == nil:
		s.send(Message{Type: "error", ID: m.ID, Session: m.Session, Code: 404, Error: "no such session"})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{cancel: cancel}
	s.mu.Lock()
	if old := s.watches[m.Session]; old != nil { // watching it again: from the new seq
		old.cancel()
		delete(s.watches, m.Session)
	}
	if s.closed || len(s.watches) >= MaxWatches {
		closed := s.closed
		s.mu.Unlock()
		cancel()
		if !closed {
			s.send(Message{Type: "error", ID: m.ID, Session: m.Session, Code: 429, Error: "too many watches on this socket (at most 16)"})
		}
		return
	}
	s.watches[m.Session] = w
	s.mu.Unlock()
	// Opening may ask another node: the reader goes on meanwhile.
	go func() {
		defer s.endWatch(m.Session, w)
		f, err := s.b.cfg.Feeds.Watch(ctx, m.Session, m.Seq)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			code, why := 404, "no such session"
			if !errors.Is(err, ErrNoSession) {
				code, why = 503, "the session's events cannot be read now"
				s.b.log.Info("bridge: watch failed", "session", m.Session, "user", s.claims.User, "error", err)
			}
			s.send(Message{Type: "error", ID: m.ID, Session: m.Session, Code: code, Error: why})
			return
		}
		defer f.Close()
		s.send(Message{Type: "watching", ID: m.ID, Session: m.Session})
		for {
			it, err := f.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					cause := "session ended"
					if !errors.Is(err, io.EOF) {
						cause = "events unavailable"
						s.b.log.Info("bridge: watched session's events failed", "session", m.Session, "error", err)
					}
					s.send(Message{Type: "unwatched", Session: m.Session, Cause: cause})
				}
				return
			}
			s.send(Message{Type: "event", Session: it.Session, Seq: it.Seq, Event: it.Event})
		}
	}()
}

// unwatch stops watching a session; false if it was not watched.
func (s *session) unwatch(session string) bool {
	s.mu.Lock()
	w := s.watches[session]
	delete(s.watches, session)
	s.mu.Unlock()
	if w == nil {
		return false
	}
	w.cancel()
	return true
}

// endWatch forgets w if it is still the socket's watch of session.
func (s *session) endWatch(session string, w *watch) {
	w.cancel()
	s.mu.Lock()
	if s.watches[session] == w {
		delete(s.watches, session)
	}
	s.mu.Unlock()
}
