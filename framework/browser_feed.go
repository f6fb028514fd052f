package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/switchboard-voice/switchboard/bridge"
)

// Bounds of a browser leg's feed.
const (
	// feedJoinWait bounds the wait, after a leg's move, for its arrival
	// (leg.joined) in the new session's stream; past it the feed goes on
	// from wherever that stream is.
	feedJoinWait = 10 * time.Second
	// feedPlaceWait bounds the wait for a dialled leg to be placed in a
	// call before its feed starts.
	feedPlaceWait = 5 * time.Second
	// feedRetries bounds the attempts to read a session after transient
	// errors (another node not answering) before the feed ends.
	feedRetries = 10
	// feedOpenTries is how often a session the leg went to is looked for
	// (300 ms apart) before the feed jumps to where the leg is now;
	// feedMaxJumps bounds such jumps in a feed's life (a session that
	// stays unreadable ends the feed instead of a loop).
	feedOpenTries = 4
	feedMaxJumps  = 8
	// relayLeftWait bounds the wait, when the relay leg leaves the far
	// session, for the news that the browser's leg left the relay first.
	relayLeftWait = 2 * time.Second
)

// browserFeeds is the bridge's source of session events.
type browserFeeds struct{ s *Server }

// Watch streams one session.
func (b browserFeeds) Watch(ctx context.Context, session string, from uint64) (bridge.Feed, error) {
	f, err := b.s.OpenSession(ctx, session, from)
	if err != nil {
		if errors.Is(err, ErrNoSession) {
			return nil, errors.Join(bridge.ErrNoSession, err)
		}
		return nil, err
	}
	return watchFeed{f}, nil
}

type watchFeed struct{ f SessionFeed }

func (w watchFeed) Next(ctx context.Context) (bridge.FeedItem, error) {
	ev, err := w.f.Next(ctx)
	if err != nil {
		return bridge.FeedItem{}, err
	}
	return bridge.FeedItem{Session: ev.Session, Seq: ev.Seq, Event: ev.JSON}, nil
}

func (w watchFeed) Close() { w.f.Close() }

// FollowLeg streams the session a browser's leg is in and follows the
// leg through moves (legFeed).
func (b browserFeeds) FollowLeg(ctx context.Context, legID, session string, from uint64) (bridge.Feed, error) {
	s := b.s
	f := &legFeed{s: s, leg: legID, log: s.log.With("leg_id", legID)}
	// A dialled leg is placed in its call just after the browser answers.
	var where string
	for deadline := time.Now().Add(feedPlaceWait); ; {
		if l := s.Leg(legID); l != nil {
			where = l.Where()
		}
		if where != "" || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	if where == "" {
		return nil, ErrNoLeg
	}
	cur, tracked, relay := f.resolve(where, legID)
	switch {
	case session == "" && s.Call(legID) != nil:
		session = legID // the call the leg placed
	case session == "" && from == 0:
		session = cur
		// A seq of a call that ended: go to where the leg is (below).
	}
	f.session, f.from, f.tracked = session, from, legID
	if session == cur {
		f.tracked = tracked
		f.startRelay(relay)
	} else if !s.hasLocal(session) {
		// A session the leg was in, no longer here: go to where it is.
		f.jumpTo(where)
	}
	return f, nil
}

// legFeed is a browser leg's feed: the events of the session the leg is
// in, in order; when the leg is moved (its leg.moved event in that
// stream, published by the session it leaves) the feed hands out that
// event, then a Moved item, then the new session's events from the leg's
// arrival (the leg.joined whose from/from_seq name that leg.moved)
// onwards. So the browser sees every event of each session from the leg's
// arrival until its departure, none twice.
//
// A leg moved to a room or call on another node is in a local relay call
// whose far leg (with the relay call's ID) is in that session: the feed
// then reads the far session (RemoteSessions) following the relay leg,
// and watches the relay call for the browser leg leaving it.
type legFeed struct {
	s   *Server
	leg string
	log *slog.Logger

	session string // the session read: a call ID or "room:NAME"
	from    uint64 // read it after this Seq
	tracked string // the leg's ID in that session's events
	feed    SessionFeed
	pending []bridge.FeedItem
	misses  int // failed opens of the session in a row
	jumps   int // jumps to where the leg is (see feedMaxJumps)

	// The leg's arrival still to be found in the new session's stream:
	// leg.joined of tracked, from anchorFrom at anchorSeq ("": any).
	searching  bool
	anchorFrom string
	anchorSeq  uint64
	searchEnd  time.Time

	// relay, when the session is on another node: the local relay call,
	// and its watcher's report of the browser leg leaving it.
	relay     string
	relayStop context.CancelFunc
	relayDone chan struct{}
	relayMove chan SessionEvent
}

// resolve turns where a leg is ("call:ID", "room:NAME") into the session
// to read, the leg's ID in it and, for a relay to another node, the
// relay call.
func (f *legFeed) resolve(where, leg string) (session, tracked, relay string) {
	session = sessionOf(where)
	if r := f.s.remoteSessions(); r != nil && session != where {
		if target, ok := r.RelayTarget(session); ok {
			return target, session, session
		}
	}
	return session, leg, ""
}

// Next returns the next item for the browser.
func (f *legFeed) Next(ctx context.Context) (bridge.FeedItem, error) {
	failures := 0
	for {
		if len(f.pending) > 0 {
			it := f.pending[0]
			f.pending = f.pending[1:]
			return it, nil
		}
		if err := ctx.Err(); err != nil {
			return bridge.FeedItem{}, err
		}
		if f.feed == nil {
			feed, err := f.s.OpenSession(ctx, f.session, f.from)
			switch {
			case err == nil:
				f.feed, f.misses = feed, 0
			case errors.Is(err, ErrNoSession):
				// A session the leg just went to may not be visible yet
				// (another node's lists lag): a few tries first.
				if f.misses++; f.misses < feedOpenTries {
					if !sleepCtx(ctx, 300*time.Millisecond) {
						return bridge.FeedItem{}, ctx.Err()
					}
					continue
				}
				f.misses = 0
				if f.jumps++; f.jumps > feedMaxJumps {
					return bridge.FeedItem{}, fmt.Errorf("framework: the events of %s cannot be read: %w", f.session, err)
				}
				if !f.jumpToCurrent() {
					return bridge.FeedItem{}, io.EOF
				}
				continue
			default:
				if failures++; failures > feedRetries {
					return bridge.FeedItem{}, err
				}
				f.log.Debug("browser feed: session not readable yet", "session", f.session, "error", err)
				if !sleepCtx(ctx, 500*time.Millisecond) {
					return bridge.FeedItem{}, ctx.Err()
				}
				continue
			}
		}
		ev, err := f.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return bridge.FeedItem{}, ctx.Err()
			}
			if mv, ok := f.relayMoved(); ok { // the browser leg left the relay
				f.switchTo(mv.Move.To, f.leg, "call:"+f.relay, mv.Seq)
				continue
			}
			if f.searching && errors.Is(err, context.DeadlineExceeded) {
				f.log.Info("browser feed: the leg's arrival is not in the session's events; going on from here", "session", f.session)
				f.searching = false
				continue
			}
			f.feed.Close()
			f.feed = nil
			if errors.Is(err, io.EOF) || errors.Is(err, ErrNoSession) {
				if f.jumps++; f.jumps > feedMaxJumps {
					return bridge.FeedItem{}, fmt.Errorf("framework: the events of %s cannot be read: %w", f.session, err)
				}
				if !f.jumpToCurrent() {
					return bridge.FeedItem{}, io.EOF
				}
				continue
			}
			if failures++; failures > feedRetries {
				return bridge.FeedItem{}, err
			}
			if !sleepCtx(ctx, 500*time.Millisecond) {
				return bridge.FeedItem{}, ctx.Err()
			}
			continue
		}
		failures = 0
		if ev.Seq > 0 {
			f.from = ev.Seq
		}
		if f.searching {
			if ev.Type != EventLegJoined || ev.LegID != f.tracked ||
				(f.anchorFrom != "" && (ev.Move == nil || ev.Move.From != f.anchorFrom || ev.Move.FromSeq != f.anchorSeq)) {
				continue // before the leg's arrival
			}
			f.searching = false
		}
		if f.relay != "" && ev.LegID == f.tracked && (ev.Type == EventLegLeft || ev.Type == EventLegEnded) && f.relayLeft(ctx) {
			// The relay leaves the far session because the browser's leg
			// left the relay call: that departure came first.
			mv, _ := f.relayMoved()
			f.switchTo(mv.Move.To, f.leg, "call:"+f.relay, mv.Seq)
			continue
		}
		f.pending = append(f.pending, bridge.FeedItem{Session: ev.Session, Seq: ev.Seq, Event: ev.JSON})
		if ev.Type == EventLegMoved && ev.LegID == f.tracked && ev.Move != nil &&
			ev.Move.From == whereOf(f.session) && ev.Move.To != ev.Move.From {
			f.switchTo(ev.Move.To, f.tracked, ev.Move.From, ev.Seq)
		}
	}
}

// read reads the current session, interrupted by the relay watcher and,
// while searching, by the search's bound.
func (f *legFeed) read(ctx context.Context) (SessionEvent, error) {
	if f.relay == "" && !f.searching {
		return f.feed.Next(ctx)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if f.searching {
		var c2 context.CancelFunc
		rctx, c2 = context.WithDeadline(rctx, f.searchEnd)
		defer c2()
	}
	if f.relay != "" {
		done := f.relayDone
		go func() {
			select {
			case <-done:
				cancel()
			case <-rctx.Done():
			}
		}()
	}
	return f.feed.Next(rctx)
}

// relayLeft waits (at most relayLeftWait) for the relay watcher to see
// the browser's leg leave the relay call.
func (f *legFeed) relayLeft(ctx context.Context) bool {
	if f.relayDone == nil {
		return false
	}
	t := time.NewTimer(relayLeftWait)
	defer t.Stop()
	select {
	case <-f.relayDone:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// relayMoved returns the browser leg's move out of the relay call, if the
// watcher saw one.
func (f *legFeed) relayMoved() (SessionEvent, bool) {
	if f.relay == "" {
		return SessionEvent{}, false
	}
	select {
	case mv := <-f.relayMove:
		return mv, true
	default:
		return SessionEvent{}, false
	}
}

// switchTo moves the feed to where the leg went (to: "call:ID" or
// "room:NAME"), from the session it left (from, where its leg.moved has
// Seq seq): a Moved item, then the new session from the leg's arrival.
func (f *legFeed) switchTo(to, tracked, from string, seq uint64) {
	if f.feed != nil {
		f.feed.Close()
		f.feed = nil
	}
	session := sessionOf(to)
	relay := ""
	own := tracked == f.leg // the browser's leg itself moved (not a relay's far leg)
	if own {
		session, tracked, relay = f.resolve(to, f.leg)
	}
	if relay != "" {
		from, seq = "", 0 // the relay leg's own arrival there (its only one)
	}
	if own { // a relay it was in is behind it
		f.stopRelay()
		f.startRelay(relay)
	}
	f.session, f.from, f.tracked = session, 0, tracked
	f.searching, f.anchorFrom, f.anchorSeq, f.searchEnd = true, from, seq, time.Now().Add(feedJoinWait)
	f.pending = append(f.pending, bridge.FeedItem{Moved: true, Session: session, Leg: tracked})
	f.log.Debug("browser feed follows the leg", "session", session, "leg", tracked)
}

// jumpTo moves the feed to where the leg is now, from its latest arrival
// there (a session on the way could not be read).
func (f *legFeed) jumpTo(where string) {
	f.switchTo(where, f.leg, "", 0)
}

// jumpToCurrent jumps to where the leg is now if that is not the session
// read; false when the leg has ended or is there already.
func (f *legFeed) jumpToCurrent() bool {
	l := f.s.Leg(f.leg)
	if l == nil {
		return false
	}
	where := l.Where()
	if where == "" {
		return false
	}
	if session, _, _ := f.resolve(where, f.leg); session == f.session {
		return false
	}
	f.jumpTo(where)
	return true
}

// startRelay watches the relay call for the browser leg leaving it.
func (f *legFeed) startRelay(relay string) {
	f.relay = relay
	if relay == "" {
		return
	}
	c := f.s.Call(relay)
	if c == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, moved := make(chan struct{}), make(chan SessionEvent, 1)
	f.relayStop, f.relayDone, f.relayMove = cancel, done, moved
	sub := c.Subscribe(ctx, 0)
	leg, from := f.leg, "call:"+relay
	go func() {
		defer sub.Close()
		for {
			ev, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if md, ok := ev.Data.(MoveData); ok && ev.Type == EventLegMoved && ev.LegID == leg && md.From == from && md.To != from {
				moved <- SessionEvent{Session: relay, Seq: ev.Seq, Type: ev.Type, LegID: ev.LegID, Move: &md}
				close(done)
				return
			}
		}
	}()
}

func (f *legFeed) stopRelay() {
	if f.relayStop != nil {
		f.relayStop()
	}
	f.relay, f.relayStop, f.relayDone, f.relayMove = "", nil, nil, nil
}

// Close ends the feed.
func (f *legFeed) Close() {
	if f.feed != nil {
		f.feed.Close()
		f.feed = nil
	}
	f.stopRelay()
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
