package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrNoSession means no call or room of that ID is live (on this node,
// or on any node a RemoteSessions reaches).
var ErrNoSession = errors.New("framework: no such session")

// SessionEvent is one event of a session's stream as feeds carry it: its
// Seq in the session (0 for an overflow marker), its type and leg, the
// MoveData of a leg.moved or leg.joined event, and the whole event as
// JSON, as clients receive it.
type SessionEvent struct {
	Session string // a call ID, or "room:NAME"
	Seq     uint64
	Type    EventType
	LegID   string
	Move    *MoveData
	JSON    json.RawMessage
}

// SessionFeed is a session's event stream read in order by one
// goroutine: Next waits for the next event (honouring ctx) and returns
// io.EOF after the last; Close releases the feed.
type SessionFeed interface {
	Next(ctx context.Context) (SessionEvent, error)
	Close()
}

// RemoteSessions reads the sessions that live on other nodes; a cluster
// node implements it and `switchboard serve --cluster` plugs it in with
// SetRemoteSessions, so browsers on any node see any session.
type RemoteSessions interface {
	// OpenSession returns the stream of a session held by another node,
	// after Seq from; an error wrapping ErrNoSession when no node has it.
	OpenSession(ctx context.Context, session string, from uint64) (SessionFeed, error)
	// RelayTarget says, for a call of this node that relays a moved leg
	// to another node, the session the leg went to there (a call ID or
	// "room:NAME"); there the relay call's ID is the leg's ID.
	RelayTarget(callID string) (session string, ok bool)
}

type remoteSessions struct{ r RemoteSessions }

// SetRemoteSessions plugs in how sessions of other nodes are read (nil:
// this node's only). Safe at any time.
func (s *Server) SetRemoteSessions(r RemoteSessions) {
	if r == nil {
		s.remote.Store(nil)
		return
	}
	s.remote.Store(&remoteSessions{r})
}

func (s *Server) remoteSessions() RemoteSessions {
	if r := s.remote.Load(); r != nil {
		return r.r
	}
	return nil
}

// OpenSession returns the event stream of a session — a call ID, or
// "room:NAME" — after Seq from (0: as far back as its replay ring
// reaches), from this node or, with SetRemoteSessions, from the node
// that holds it. It returns an error wrapping ErrNoSession when the
// session is not live anywhere it can look. Cost: a subscription on a
// local log; a long-poll per batch for a remote one.
func (s *Server) OpenSession(ctx context.Context, session string, from uint64) (SessionFeed, error) {
	if f := s.openLocal(session, from); f != nil {
		return f, nil
	}
	if r := s.remoteSessions(); r != nil {
		f, err := r.OpenSession(ctx, session, from)
		if err != nil {
			return nil, fmt.Errorf("framework: events of %s: %w", session, err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("framework: events of %s: %w", session, ErrNoSession)
}

// openLocal is a live session of this node's, or nil.
func (s *Server) openLocal(session string, from uint64) SessionFeed {
	var sub *Subscription
	if room, ok := strings.CutPrefix(session, "room:"); ok {
		sub = s.Room(room).Subscribe(context.Background(), from)
	} else if c := s.Call(session); c != nil {
		sub = c.Subscribe(context.Background(), from)
	}
	if sub == nil {
		return nil
	}
	return &localFeed{s: s, session: session, sub: sub}
}

// hasLocal says whether a session is live on this node.
func (s *Server) hasLocal(session string) bool {
	if room, ok := strings.CutPrefix(session, "room:"); ok {
		return s.rooms.lookup(room) != nil
	}
	return s.Call(session) != nil
}

// localFeed reads a session of this node.
type localFeed struct {
	s       *Server
	session string
	sub     *Subscription
}

func (f *localFeed) Next(ctx context.Context) (SessionEvent, error) {
	for {
		ev, err := f.sub.Next(ctx)
		if err != nil {
			return SessionEvent{}, err
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			f.s.log.Warn("session events: an event does not marshal", "call_id", ev.CallID, "type", ev.Type.String(), "error", err)
			continue
		}
		se := SessionEvent{Session: f.session, Seq: ev.Seq, Type: ev.Type, LegID: ev.LegID, JSON: raw}
		if md, ok := ev.Data.(MoveData); ok {
			se.Move = &md
		}
		return se, nil
	}
}

func (f *localFeed) Close() { f.sub.Close() }

// sessionOf is the session ID of a place a leg is ("call:ID" or
// "room:NAME", as Leg.Where says): the call ID, or "room:NAME".
func sessionOf(where string) string {
	if id, ok := strings.CutPrefix(where, "call:"); ok {
		return id
	}
	return where
}

// whereOf is the inverse of sessionOf.
func whereOf(session string) string {
	if strings.HasPrefix(session, "room:") {
		return session
	}
	return "call:" + session
}
