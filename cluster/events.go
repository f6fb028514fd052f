package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

// A session's events are read where the session lives. Node.Events on any
// node finds the owner — a call through the replicated call lists (else
// by asking the nodes), a room ("room:NAME") through its grain — and
// pulls the owner's own stream in batches: each request carries the last
// Seq received and the owner answers with the events after it (waiting
// up to a second for the first). So the events arrive in the owner's
// order with the owner's Seq numbers, nothing is lost or repeated between
// batches, and resuming from a Seq works on any node exactly as on the
// owner (as far back as the owner's replay ring reaches; further back the
// owner's overflow marker says what was lost).

// Event is a session event as the cluster carries it: the framework's
// Event with its Data as JSON (the same on every node, local or not),
// and the node the session lives on.
type Event struct {
	Seq    uint64              `json:"seq"`
	Time   time.Time           `json:"time"`
	CallID string              `json:"call_id"`
	LegID  string              `json:"leg_id,omitempty"`
	Type   framework.EventType `json:"type"`
	Data   json.RawMessage     `json:"data,omitempty"`
	Node   string              `json:"node,omitempty"`
}

// eventsReq asks the node holding a session for its events after From.
type eventsReq struct {
	Session string `json:"session"` // a call ID, or "room:NAME"
	From    uint64 `json:"from"`
	Max     int    `json:"max"`
	WaitMS  int    `json:"wait_ms"`
}

// eventsResp is a batch of a session's events.
type eventsResp struct {
	Node   string  `json:"node"`
	Found  bool    `json:"found"`
	Events []Event `json:"events"`
	End    bool    `json:"end,omitempty"` // the session ended: nothing follows
}

// Bounds of one events request.
const (
	maxEventBatch = 256
	maxEventWait  = 5000 // ms
)

// eventsLocal answers an eventsReq from this node's own sessions.
func (n *Node) eventsLocal(req eventsReq) eventsResp {
	resp := eventsResp{Node: n.opts.Node}
	ctx, cancel := context.WithTimeout(n.ctx, time.Duration(req.WaitMS)*time.Millisecond)
	defer cancel()
	var sub *framework.Subscription
	if room, ok := strings.CutPrefix(req.Session, "room:"); ok {
		sub = n.srv.Room(room).Subscribe(ctx, req.From)
	} else if c := n.callForEvents(req.Session); c != nil {
		sub = c.Subscribe(ctx, req.From)
	}
	if sub == nil {
		return resp
	}
	defer sub.Close()
	resp.Found = true
	done, stop := context.WithCancel(context.Background())
	stop() // for reading what is already there without waiting
	for len(resp.Events) < req.Max {
		wait := ctx
		if len(resp.Events) > 0 {
			wait = done
		}
		ev, err := sub.Next(wait)
		if errors.Is(err, io.EOF) {
			resp.End = true
			break
		}
		if err != nil {
			break // waited long enough, or nothing more right now
		}
		var data json.RawMessage
		if ev.Data != nil {
			if data, err = json.Marshal(ev.Data); err != nil {
				n.log.Warn("cluster: an event does not marshal", "call_id", ev.CallID, "type", ev.Type.String(), "error", err)
				data = nil
			}
		}
		resp.Events = append(resp.Events, Event{Seq: ev.Seq, Time: ev.Time, CallID: ev.CallID, LegID: ev.LegID, Type: ev.Type,
			Data: data, Node: n.opts.Node})
	}
	return resp
}

// Feed is a session's event stream read from any node (Node.Events).
type Feed struct {
	n       *Node
	session string
	from    uint64 // the last Seq fetched
	seq     uint64 // the last Seq handed out
	owner   string // the owner's remote address, once known
	buf     []Event
	end     bool
}

// Events returns the event stream of a session — a call ID, or
// "room:NAME" for a room of the cluster — from the event after Seq from
// (0: as far back as the owner keeps), wherever the session lives. Read
// it with Next.
func (n *Node) Events(session string, from uint64) *Feed {
	return &Feed{n: n, session: session, from: from, seq: from}
}

// Next returns the next event, waiting for it as long as ctx allows; an
// EventOverflow marker (Seq 0) when the owner no longer had the events
// asked for; io.EOF after the session's last event; ErrCallNotFound when
// no node has the session.
func (f *Feed) Next(ctx context.Context) (Event, error) {
	for len(f.buf) == 0 {
		if f.end {
			return Event{}, io.EOF
		}
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		if err := f.fetch(ctx); err != nil {
			return Event{}, err
		}
	}
	ev := f.buf[0]
	f.buf = f.buf[1:]
	if ev.Seq > 0 {
		f.seq = ev.Seq
	} else if od, ok := overflowOf(ev); ok {
		f.seq = od.To
	}
	return ev, nil
}

// Seq is the Seq of the last event Next returned (what to resume from).
func (f *Feed) Seq() uint64 { return f.seq }

// overflowOf reads an overflow marker's range.
func overflowOf(ev Event) (framework.OverflowData, bool) {
	var od framework.OverflowData
	if ev.Type != framework.EventOverflow || json.Unmarshal(ev.Data, &od) != nil {
		return od, false
	}
	return od, true
}

// fetch asks the owner for the next batch, waiting up to a second for
// one.
func (f *Feed) fetch(ctx context.Context) error {
	wait := time.Second
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	if wait <= 0 {
		return fmt.Errorf("cluster: events of %s: %w", f.session, context.DeadlineExceeded)
	}
	return f.fetchWait(ctx, wait)
}

// fetchWait asks the owner for the next batch, waiting up to wait for
// one (0: what is there now).
func (f *Feed) fetchWait(ctx context.Context, wait time.Duration) error {
	n := f.n
	if len(f.session) == 0 || len(f.session) > maxIDLen+5 {
		return fmt.Errorf("cluster: events of %q: bad session", f.session)
	}
	if f.owner == "" {
		owner, err := n.sessionOwner(ctx, f.session)
		if err != nil {
			return fmt.Errorf("cluster: events of %s: %w", f.session, err)
		}
		f.owner = owner
	}
	var resp eventsResp
	err := n.ask(ctx, f.owner, msgEvents, eventsReq{Session: f.session, From: f.from, Max: maxEventBatch, WaitMS: int(wait / time.Millisecond)}, &resp)
	if err != nil {
		f.owner = "" // look again next time (the owner may have left)
		return err
	}
	if !resp.Found {
		f.owner = ""
		if f.from > 0 {
			return io.EOF // it was there: it ended and is gone
		}
		return fmt.Errorf("cluster: events of %s: %w", f.session, ErrCallNotFound)
	}
	for _, ev := range resp.Events {
		switch {
		case ev.Type == framework.EventOverflow:
			if od, ok := overflowOf(ev); ok && od.To > f.from {
				f.from = od.To
			}
		case ev.Seq > f.from:
			f.from = ev.Seq
		default:
			continue // never hand out an event twice
		}
		f.buf = append(f.buf, ev)
	}
	f.end = resp.End
	return nil
}

// sessionOwner is the remote address of the node holding a call or a
// room ("room:NAME").
func (n *Node) sessionOwner(ctx context.Context, session string) (string, error) {
	if room, ok := strings.CutPrefix(session, "room:"); ok {
		host, err := n.RoomHost(ctx, room)
		if err != nil {
			return "", err
		}
		return host.Addr, nil
	}
	if owner := n.ownerOf(session); owner != "" {
		return owner, nil
	}
	return n.findCall(ctx, session)
}

// endedRetention is how long a node keeps an ended call's event log
// readable for other nodes (and late readers) after call.ended.
const endedRetention = 10 * time.Second

// keptCall is a call whose handle the node holds so its event log stays
// readable for endedRetention after it ends.
type keptCall struct {
	c     *framework.Call
	ended time.Time // zero while live
}

// keepCall holds a call that started here (from the server's stream).
func (n *Node) keepCall(id string) {
	c := n.srv.Call(id)
	if c == nil {
		return // already over
	}
	n.keptMu.Lock()
	defer n.keptMu.Unlock()
	if n.kept == nil {
		n.kept = map[string]*keptCall{}
	}
	n.kept[id] = &keptCall{c: c}
	n.pruneKeptLocked(time.Now())
}

// callEnded starts an ended call's retention.
func (n *Node) callEnded(id string) {
	n.keptMu.Lock()
	defer n.keptMu.Unlock()
	now := time.Now()
	if k := n.kept[id]; k != nil && k.ended.IsZero() {
		k.ended = now
	}
	n.pruneKeptLocked(now)
}

func (n *Node) pruneKeptLocked(now time.Time) {
	if now.Sub(n.keptPruned) < time.Second {
		return // at most one pass a second
	}
	n.keptPruned = now
	for id, k := range n.kept {
		if !k.ended.IsZero() && now.Sub(k.ended) > endedRetention {
			delete(n.kept, id)
		}
	}
}

// callForEvents is a live call of this node, or one that ended less than
// endedRetention ago, or nil.
func (n *Node) callForEvents(id string) *framework.Call {
	if c := n.srv.Call(id); c != nil {
		return c
	}
	n.keptMu.Lock()
	defer n.keptMu.Unlock()
	if k := n.kept[id]; k != nil && (k.ended.IsZero() || time.Since(k.ended) <= endedRetention) {
		return k.c
	}
	return nil
}

// session is the session a moveReq's leg goes to: "room:NAME" or the
// call's ID.
func (r moveReq) session() string {
	if r.Call != "" {
		return r.Call
	}
	return "room:" + r.Room
}

// setRelay records where a relay call of this node leads: the session
// its far leg is in on the other node. Relays that have ended are
// forgotten on the way (one pass over the relays up).
func (n *Node) setRelay(callID, session string) {
	n.targetsMu.Lock()
	defer n.targetsMu.Unlock()
	for id := range n.relayTargets {
		if n.srv.Call(id) == nil {
			delete(n.relayTargets, id)
		}
	}
	if n.relayTargets == nil {
		n.relayTargets = map[string]string{}
	}
	n.relayTargets[callID] = session
}

// RelayTarget says where a relay call of this node that carries a moved
// leg to another node leads: the room ("room:NAME") or call ID there. On
// that node the relay's far leg has the relay call's ID (the SIP
// Call-ID). It makes Node a framework.RemoteSessions.
func (n *Node) RelayTarget(callID string) (string, bool) {
	n.targetsMu.Lock()
	s, ok := n.relayTargets[callID]
	n.targetsMu.Unlock()
	return s, ok && n.srv.Call(callID) != nil
}

// OpenSession returns the event stream of a session held by another node
// (Node.Events), after checking with one request, without waiting, that
// some node has it: an error wrapping framework.ErrNoSession if none
// does. With Server.SetRemoteSessions(node), browsers on this node watch
// and follow sessions of any node.
func (n *Node) OpenSession(ctx context.Context, session string, from uint64) (framework.SessionFeed, error) {
	f := n.Events(session, from)
	if err := f.fetchWait(ctx, 0); err != nil {
		if errors.Is(err, ErrCallNotFound) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: %w", framework.ErrNoSession, err)
		}
		return nil, err
	}
	return sessionFeed{f}, nil
}

// sessionFeed is a Feed as the framework reads it.
type sessionFeed struct{ f *Feed }

func (s sessionFeed) Next(ctx context.Context) (framework.SessionEvent, error) {
	ev, err := s.f.Next(ctx)
	if err != nil {
		if errors.Is(err, ErrCallNotFound) {
			return framework.SessionEvent{}, fmt.Errorf("%w: %w", framework.ErrNoSession, err)
		}
		return framework.SessionEvent{}, err
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return framework.SessionEvent{}, err
	}
	se := framework.SessionEvent{Session: s.f.session, Seq: ev.Seq, Type: ev.Type, LegID: ev.LegID, JSON: raw}
	if ev.Type == framework.EventLegMoved || ev.Type == framework.EventLegJoined || ev.Type == framework.EventLegLeft {
		var md framework.MoveData
		if json.Unmarshal(ev.Data, &md) == nil {
			se.Move = &md
		}
	}
	return se, nil
}

func (sessionFeed) Close() {}
