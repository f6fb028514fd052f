package framework

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

// Replies to requests travel as messages too, never as channels: a
// request names where its answer goes (ReplyAddr) and the answer is a
// Reply sent there. Go code that waits — a Call verb, a Leg verb, Move —
// registers with the server's reply inbox (one small actor per server),
// which hands each Reply to the goroutine waiting for its request ID; the
// goroutine still honours its ctx. Long operations (a Play until the
// prompt ends, a Dial until the party hangs up) keep the ReplyAddr and
// answer later.

// ReplyAddr is where the answer to a request goes: an actor (the server's
// reply inbox, or a call actor collecting its own answers) and the
// request's ID there. A zero ReplyAddr wants no answer.
type ReplyAddr struct {
	ReplyTo *actor.PID `json:"reply_to,omitempty"`
	ReqID   uint64     `json:"req_id,omitempty"`
}

func (r *ReplyAddr) replyAddr() *ReplyAddr { return r }

// request is a message that carries a ReplyAddr.
type request interface{ replyAddr() *ReplyAddr }

// Reply answers one request: its error, and for the requests that return
// something, the caller's leg ID (callerReq) or a list of legs (legsReq,
// roomInfoReq).
type Reply struct {
	ReqID uint64     `json:"req_id"`
	Err   *ErrorData `json:"err,omitempty"`
	LegID string     `json:"leg_id,omitempty"`
	Legs  []LegInfo  `json:"legs,omitempty"`
}

// replyTo sends err as the answer to a request (nothing if it wants none).
func replyTo(s actor.SenderContext, to ReplyAddr, err error) {
	replyWith(s, to, &Reply{Err: errData(err)})
}

// replyWith sends r as the answer to a request.
func replyWith(s actor.SenderContext, to ReplyAddr, r *Reply) {
	if to.ReplyTo == nil {
		return
	}
	r.ReqID = to.ReqID
	s.Send(to.ReplyTo, r)
}

// ErrorData is an error as plain data. The framework's and sip's sentinel
// errors keep their identity across it (errors.Is still matches after the
// trip), a SIP status its code and reason; any other error keeps its text.
type ErrorData struct {
	// Kind names a known sentinel the error matches ("" for none).
	Kind string `json:"kind,omitempty"`
	// Status and Reason are a SIP final response's (sip.StatusError).
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Text is the error's text when it says more than its Kind or Status.
	Text string `json:"text,omitempty"`
}

// sentinels are the errors that keep their identity as ErrorData, most
// specific first.
var sentinels = []struct {
	kind string
	err  error
}{
	{"hangup", ErrHangup}, {"no_input", ErrNoInput}, {"not_answered", ErrNotAnswered},
	{"bridged", ErrBridged}, {"leg_moved", ErrLegMoved}, {"no_leg", ErrNoLeg}, {"not_here", errNotHere},
	{"kicked", ErrKicked}, {"room_closed", ErrRoomClosed}, {"bad_signal", ErrBadSignal},
	{"canceled", context.Canceled}, {"deadline", context.DeadlineExceeded},
	{"interrupted", media.ErrInterrupted}, {"closed", media.ErrClosed}, {"eof", io.EOF},
	// not_registered before not_found: sip.ErrNotRegistered also
	// matches sip.ErrNotFound, and a caller must still get 480 for it.
	{"not_registered", sip.ErrNotRegistered},
	{"busy", sip.ErrBusy}, {"declined", sip.ErrDeclined}, {"not_found", sip.ErrNotFound},
	{"no_answer", sip.ErrNoAnswer}, {"rejected", sip.ErrRejected}, {"no_codec", sip.ErrNoCodec},
}

// errData turns err into plain data (nil for nil).
func errData(err error) *ErrorData {
	if err == nil {
		return nil
	}
	var se *sip.StatusError
	if errors.As(err, &se) {
		d := &ErrorData{Status: se.Code, Reason: se.Reason}
		if err != error(se) {
			d.Text = err.Error()
		}
		return d
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			d := &ErrorData{Kind: s.kind}
			if err != s.err {
				d.Text = err.Error()
			}
			return d
		}
	}
	return &ErrorData{Text: err.Error()}
}

// Err turns the data back into an error (nil for nil).
func (d *ErrorData) Err() error {
	if d == nil {
		return nil
	}
	var base error
	if d.Status != 0 {
		base = sip.NewStatusError(d.Status, d.Reason)
	} else {
		for _, s := range sentinels {
			if s.kind == d.Kind {
				base = s.err
				break
			}
		}
	}
	switch {
	case base == nil:
		return errors.New(d.Text)
	case d.Text == "" || d.Text == base.Error():
		return base
	}
	return &textError{text: d.Text, err: base}
}

// textError is an error whose text came with it and that still matches
// the sentinel it wrapped.
type textError struct {
	text string
	err  error
}

func (e *textError) Error() string { return e.text }
func (e *textError) Unwrap() error { return e.err }

// replyInbox is the server's reply address: a protoactor process (like
// the futures protoactor builds for its own request/response) registered
// under a PID, so replies reach it the way any message reaches an actor —
// from this node or, in a cluster, from another. It has no mailbox: a
// Reply is handed straight to the goroutine waiting for its request ID,
// in the sender's goroutine and without blocking (one reply per request,
// into a buffered channel). Replies nobody waits for (the waiter gave up)
// are dropped.
type replyInbox struct {
	pid     *actor.PID
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan *Reply
}

// newReplyInbox registers the inbox with the actor system.
func newReplyInbox(sys *actor.ActorSystem) *replyInbox {
	in := &replyInbox{}
	in.pid, _ = sys.ProcessRegistry.Add(in, "replies"+sys.ProcessRegistry.NextId())
	return in
}

// SendUserMessage delivers a Reply to its waiter (actor.Process).
func (in *replyInbox) SendUserMessage(_ *actor.PID, message any) {
	r, ok := actor.UnwrapEnvelopeMessage(message).(*Reply)
	if !ok {
		return
	}
	in.mu.Lock()
	ch := in.waiting[r.ReqID]
	delete(in.waiting, r.ReqID)
	in.mu.Unlock()
	if ch != nil {
		ch <- r // buffered: one reply per request
	}
}

// SendSystemMessage ignores system messages (actor.Process).
func (in *replyInbox) SendSystemMessage(*actor.PID, any) {}

// Stop does nothing: the inbox lives as long as the actor system
// (actor.Process).
func (in *replyInbox) Stop(*actor.PID) {}

// waiter is one request's place in the inbox.
type waiter struct {
	in *replyInbox
	id uint64
	ch chan *Reply
}

// wait gives m a fresh request ID whose reply comes to the returned
// waiter. Call done when no longer waiting.
func (in *replyInbox) wait(m request) *waiter {
	in.mu.Lock()
	in.next++
	id := in.next
	if in.waiting == nil {
		in.waiting = map[uint64]chan *Reply{}
	}
	ch := make(chan *Reply, 1)
	in.waiting[id] = ch
	in.mu.Unlock()
	*m.replyAddr() = ReplyAddr{ReplyTo: in.pid, ReqID: id}
	return &waiter{in: in, id: id, ch: ch}
}

// done forgets the waiter; a later reply is dropped.
func (w *waiter) done() {
	w.in.mu.Lock()
	delete(w.in.waiting, w.id)
	w.in.mu.Unlock()
}

// pending returns how many requests wait for a reply (for leak checks).
func (in *replyInbox) pending() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.waiting)
}

// objects is the node-local table of live objects that messages cannot
// carry — a Source passed to Play, a Sink passed to Listen or Tap, a SIP
// transfer, a call's heard-audio switch — keyed by a handle ID the
// messages carry instead. The actor that uses an object takes it out;
// the requester drops the ID when it stops waiting, so an object a
// message never reached does not stay.
type objects struct {
	mu   sync.Mutex
	next uint64
	m    map[string]any
}

// put stores v and returns its handle ID ("" for nil).
func (o *objects) put(v any) string {
	if v == nil {
		return ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	id := "obj-" + strconv.FormatUint(o.next, 10)
	if o.m == nil {
		o.m = map[string]any{}
	}
	o.m[id] = v
	return id
}

// newKey returns a fresh key (for taps), unique in this server.
func (o *objects) newKey(prefix string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next++
	return prefix + "-" + strconv.FormatUint(o.next, 10)
}

// get returns the object under id, leaving it there.
func (o *objects) get(id string) any {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[id]
}

// take returns the object under id and forgets it.
func (o *objects) take(id string) any {
	o.mu.Lock()
	defer o.mu.Unlock()
	v := o.m[id]
	delete(o.m, id)
	return v
}

// drop forgets id.
func (o *objects) drop(id string) {
	if id == "" {
		return
	}
	o.mu.Lock()
	delete(o.m, id)
	o.mu.Unlock()
}

func (o *objects) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}
