package framework

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"time"
)

// DefaultEventReplay is how many of a session's latest events its log
// keeps for subscribers that resume or fall behind.
const DefaultEventReplay = 1024

// DefaultServerEventReplay is the same for the server-wide stream.
const DefaultServerEventReplay = 8192

// FromNow, passed as from to Subscribe, skips everything published so
// far: the subscription starts with the next event.
const FromNow uint64 = math.MaxUint64

// ErrSubscriptionClosed is returned by Subscription.Next after Close.
var ErrSubscriptionClosed = errors.New("framework: subscription closed")

// EventLog is an ordered, replayable event stream: one per call (and per
// room). Append numbers each event (Seq, gap-free from 1) and stamps its
// Time; the latest Replay events stay in a ring. Any number of
// subscribers read it, each with its own cursor: a subscriber's bounded
// queue is its window on the ring, so Append never blocks and never
// copies per subscriber, and a subscriber that falls more than Replay
// events behind is told so with an EventOverflow marker (never a silent
// loss) and goes on from the oldest event still kept.
//
// Append is safe from any goroutine and the stream's order is the order
// of the Append calls; a session's log has one producer (its actor), the
// server-wide log one per session. Subscribers may be any goroutines. Cost: Append takes a mutex, stores one Event, and wakes
// waiting subscribers by closing one channel (allocated only when someone
// waits); the ring grows as events come, up to Replay entries.
type EventLog struct {
	session string // CallID of overflow markers
	server  bool   // numbers ServerSeq and keeps the event's Seq and Time

	mu     sync.Mutex
	buf    []Event // ring; grows to max, then wraps
	start  int     // index of the oldest event in buf
	first  uint64  // seq of buf[start]
	last   uint64  // seq of the newest event; 0 = none yet
	max    int
	wake   chan struct{} // closed by the next Append or Close
	closed bool
}

// NewEventLog returns an empty log for the session (a call or room id,
// used in overflow markers) keeping the latest replay events (<= 0 means
// DefaultEventReplay).
func NewEventLog(session string, replay int) *EventLog {
	if replay <= 0 {
		replay = DefaultEventReplay
	}
	return &EventLog{session: session, max: replay, first: 1}
}

// Append adds ev to the stream, setting its Seq and Time, and returns it
// as stored. After Close it stores nothing and returns ev with Seq 0.
func (l *EventLog) Append(ev Event) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		ev.Seq = 0
		return ev
	}
	l.last++
	if l.server {
		ev.ServerSeq = l.last
	} else {
		ev.Seq = l.last
		ev.Time = time.Now()
	}
	if len(l.buf) < l.max {
		l.buf = append(l.buf, ev)
	} else {
		l.buf[l.start] = ev
		l.start = (l.start + 1) % l.max
		l.first++
	}
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
	return ev
}

// Close ends the stream: subscribers read what is left, then io.EOF.
func (l *EventLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

// Last returns the Seq of the newest event (0 before the first).
func (l *EventLog) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Subscribe returns a subscription to the events after from: 0 means
// every event still kept, FromNow only events appended from now on, and
// the last Seq a subscriber saw resumes it, replaying every later event
// exactly once. Events already evicted from the ring come as one
// EventOverflow marker first. A from beyond the newest event starts from
// the next one. The subscription ends when ctx ends, at Close, or when
// the log is closed and read to the end.
func (l *EventLog) Subscribe(ctx context.Context, from uint64) *Subscription {
	if ctx == nil {
		ctx = context.Background()
	}
	l.mu.Lock()
	next := from + 1
	if from == FromNow || from > l.last {
		next = l.last + 1
	}
	l.mu.Unlock()
	return &Subscription{log: l, next: next, ctx: ctx, done: make(chan struct{})}
}

// Subscription is one reader's cursor on an EventLog. Next and C are for
// one goroutine; Close may be called from any.
type Subscription struct {
	log  *EventLog
	ctx  context.Context
	next uint64 // seq of the next event to deliver; guarded by log.mu

	closeOnce sync.Once
	done      chan struct{}

	chOnce sync.Once
	ch     chan Event
	errMu  sync.Mutex
	err    error
}

// poll returns the next event or marker if there is one, else a channel
// that is closed when there may be (nil wake with ok false means the
// stream has ended).
func (s *Subscription) poll() (ev Event, ok bool, wake chan struct{}, ended bool) {
	l := s.log
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.next < l.first {
		ev = Event{Time: time.Now(), CallID: l.session, Type: EventOverflow, Data: OverflowData{From: s.next, To: l.first - 1}}
		s.next = l.first
		return ev, true, nil, false
	}
	if s.next <= l.last {
		ev = l.buf[(l.start+int(s.next-l.first))%len(l.buf)]
		s.next++
		return ev, true, nil, false
	}
	if l.closed {
		return Event{}, false, nil, true
	}
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return Event{}, false, l.wake, false
}

// tryNext returns the next event without waiting.
func (s *Subscription) tryNext() (Event, bool) {
	ev, ok, _, _ := s.poll()
	return ev, ok
}

// Next returns the next event (or an EventOverflow marker), waiting for
// one. It returns io.EOF once the stream has ended and been read,
// ErrSubscriptionClosed after Close, or the error of ctx or of the
// subscription's own ctx.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		select {
		case <-s.done:
			return Event{}, ErrSubscriptionClosed
		default:
		}
		ev, ok, wake, ended := s.poll()
		if ok {
			return ev, nil
		}
		if ended {
			return Event{}, io.EOF
		}
		select {
		case <-wake:
		case <-s.done:
			return Event{}, ErrSubscriptionClosed
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-s.ctx.Done():
			return Event{}, s.ctx.Err()
		}
	}
}

// C returns a channel carrying the subscription's events (and overflow
// markers), closed when the subscription ends; Err then says why. The
// first call starts one goroutine that feeds it until then. Use either C
// or Next, not both.
func (s *Subscription) C() <-chan Event {
	s.chOnce.Do(func() {
		s.ch = make(chan Event)
		go s.pump()
	})
	return s.ch
}

func (s *Subscription) pump() {
	defer close(s.ch)
	for {
		ev, err := s.Next(s.ctx)
		if err != nil {
			s.errMu.Lock()
			s.err = err
			s.errMu.Unlock()
			return
		}
		select {
		case s.ch <- ev:
		case <-s.done:
			s.errMu.Lock()
			s.err = ErrSubscriptionClosed
			s.errMu.Unlock()
			return
		case <-s.ctx.Done():
			s.errMu.Lock()
			s.err = s.ctx.Err()
			s.errMu.Unlock()
			return
		}
	}
}

// Err returns why C's channel was closed (io.EOF at the end of the
// stream), or nil while it is open.
func (s *Subscription) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Close ends the subscription; its goroutine (if C was used) exits.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}
