package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

// MaxSignalPayload bounds the JSON payload of a signal (Call.Signal, SIP
// INFO); MaxSignalName its name.
const (
	MaxSignalPayload = sip.MaxSignalPayload
	MaxSignalName    = sip.MaxSignalName
)

// ErrBadSignal reports a signal with an invalid name or payload.
var ErrBadSignal = errors.New("framework: invalid signal")

// Messages between the Call handle, leg actors and the call actor for the
// session's event stream.
type (
	// publishReq publishes an event made outside the call actor (the
	// presence hook, Call.Signal), in the stream's order.
	publishReq struct {
		legID string
		typ   EventType
		data  any
		reply chan error
	}
	// chatReq is Call.SendMessage: chat from the application to every
	// leg that carries it.
	chatReq struct {
		text  string
		reply chan error
	}
	// ringDone is the outcome of Ring's 180, sent outside the mailbox.
	ringDone struct {
		legID string
		err   error
		reply chan error
	}
	// legSignal: a leg sent a signal (SIP INFO application/json).
	legSignal struct {
		legID   string
		name    string
		payload json.RawMessage
	}
	// legPanic: user code on a leg's media path (its Source, Sink or
	// DTMF callback) panicked.
	legPanic struct {
		legID string
		err   *media.PanicError
	}
)

// signalable is a leg that can receive signals from its far end; sip.Leg
// has it (INFO with application/json).
type signalable interface {
	OnSignal(fn func(name string, payload []byte))
}

// Signal publishes a custom signal on the call's event stream: name (1-64
// bytes of UTF-8) and payload, marshalled to JSON (at most
// MaxSignalPayload bytes; a json.RawMessage or []byte payload must already
// be valid JSON). Every subscriber sees it in order with the call's other
// events.
func (c *Call) Signal(ctx context.Context, name string, payload any) error {
	data, err := checkSignal(name, payload)
	if err != nil {
		return fmt.Errorf("framework: signal %q: %w", name, err)
	}
	r := &publishReq{typ: EventSignal, data: data, reply: make(chan error, 1)}
	return c.request(ctx, "signal "+name, r, r.reply)
}

// checkSignal validates a signal and returns its event data.
func checkSignal(name string, payload any) (SignalData, error) {
	if name == "" || len(name) > MaxSignalName || !utf8.ValidString(name) {
		return SignalData{}, fmt.Errorf("%w: name must be 1-%d bytes of UTF-8", ErrBadSignal, MaxSignalName)
	}
	var raw []byte
	switch p := payload.(type) {
	case nil:
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return SignalData{}, fmt.Errorf("%w: %w", ErrBadSignal, err)
		}
		raw = b
	}
	if len(raw) > MaxSignalPayload {
		return SignalData{}, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrBadSignal, len(raw), MaxSignalPayload)
	}
	if raw != nil && !json.Valid(raw) {
		return SignalData{}, fmt.Errorf("%w: payload is not valid JSON", ErrBadSignal)
	}
	if raw != nil {
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err == nil {
			raw = buf.Bytes()
		}
	}
	return SignalData{Name: name, Payload: raw}, nil
}

// publish is the internal hook for events produced outside the call actor
// (presence): it is appended in order with the call's own events. It
// returns ErrHangup once the call has ended.
func (c *Call) publish(ctx context.Context, legID string, typ EventType, data any) error {
	r := &publishReq{legID: legID, typ: typ, data: data, reply: make(chan error, 1)}
	return c.request(ctx, "publish "+typ.String(), r, r.reply)
}

// publish appends an event to the call's stream and to the server-wide
// stream. It runs in the call actor only (the streams' single producer).
func (a *callActor) publish(legID string, typ EventType, data any) {
	if a.ended && typ != EventCallEnded {
		return
	}
	ev := a.srv.publishTo(a.call.stream, Event{CallID: a.call.id, LegID: legID, Type: typ, Data: data})
	if typ == EventDTMF && ev.Seq != 0 {
		a.call.lastDigit.Store(ev.Seq)
	}
}

// publishTo appends ev to a session's log (a call's or a room's) and then
// to the server-wide stream, and returns it as stored (Seq 0 if the log
// is closed). Session actors publish through it, from their own
// goroutine, so each session's order is the same in both streams.
func (s *Server) publishTo(log *EventLog, ev Event) Event {
	ev = log.Append(ev)
	if ev.Seq != 0 {
		s.events.Append(ev)
	}
	return ev
}

// ringInBackground sends a leg's 180 outside the actor's mailbox (a 180
// may wait on a TCP connection) and publishes leg.ringing once it is out.
// reply, if set, gets the result. For Ring, and for Dial's 180 to the
// caller.
func (a *callActor) ringInBackground(ctx actor.Context, sig Signaling, reply chan error) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	if reply == nil {
		reply = make(chan error, 1)
	}
	go func() { root.Send(self, &ringDone{legID: sig.ID(), err: sig.Ringing(), reply: reply}) }()
}

// onSessionMessage handles the event-stream messages; false if m is not
// one of them.
func (a *callActor) onSessionMessage(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *publishReq:
		if a.ended {
			m.reply <- ErrHangup
			return true
		}
		a.publish(m.legID, m.typ, m.data)
		m.reply <- nil
	case *chatReq:
		a.sendChat(ctx, "", m.text, m.reply)
	case *legChat:
		a.publish(m.legID, EventChat, ChatData{ContentType: m.contentType, Text: m.text})
		a.sendChat(ctx, m.legID, m.text, nil)
	case *legSignal:
		a.publish(m.legID, EventSignal, SignalData{Name: m.name, Payload: m.payload})
	case *ringReq:
		a.withFirstLeg(m.reply, func(l *legRef) { a.ringInBackground(ctx, l.sig, m.reply) })
	case *ringDone:
		if m.err != nil {
			a.log.Debug("180 failed", "leg_id", m.legID, "error", m.err)
		} else {
			if l := a.legs[m.legID]; l != nil && !l.answered && !l.ended {
				a.publish(m.legID, EventLegRinging, nil)
			}
		}
		m.reply <- m.err
	case *legPanic:
		a.onLegPanic(ctx, m)
	case *holdDone:
		a.onHoldDone(m)
	default:
		return false
	}
	return true
}

// sendChat sends text to every answered leg other than from (the leg it
// came from, "" for the application) as an in-dialog MESSAGE, or the
// browser's chat. With a reply (Call.SendMessage) the text is published
// first and the reply says whether every leg accepted it.
func (a *callActor) sendChat(ctx actor.Context, from, text string, reply chan error) {
	if reply != nil {
		if a.ended {
			reply <- ErrHangup
			return
		}
		a.publish("", EventChat, ChatData{ContentType: "text/plain", Text: text})
	}
	var replies []chan error
	var ids []string
	for _, id := range a.order {
		l := a.legs[id]
		if id == from || l.ended || !l.answered {
			continue
		}
		r := make(chan error, 1)
		ctx.Send(l.pid, &legSendChat{text: text, reply: r})
		replies, ids = append(replies, r), append(ids, id)
	}
	if reply == nil {
		return
	}
	if len(replies) == 0 {
		reply <- errors.New("no answered leg to carry the message")
		return
	}
	log := a.log
	go func() {
		var errs []error
		for i, r := range replies {
			if err := <-r; err != nil {
				log.Debug("chat: a leg did not take the message", "leg_id", ids[i], "error", err)
				errs = append(errs, fmt.Errorf("leg %s: %w", ids[i], err))
			}
		}
		reply <- errors.Join(errs...)
	}()
}

// onLegPanic ends the call whose user code panicked on the media path:
// one log line with the stack, then every leg is hung up and the CDR says
// where it panicked.
func (a *callActor) onLegPanic(ctx actor.Context, m *legPanic) {
	if a.ended || a.ending {
		return
	}
	cause := "panic in " + m.err.Where.String()
	a.log.Error("user code panicked on the media path; ending the call", "leg_id", m.legID,
		"where", m.err.Where.String(), "panic", fmt.Sprint(m.err.Value), "stack", string(m.err.Stack))
	a.cause = cause
	a.hangupAll(ctx, cause)
}

// panickedPlaying ends the call when a playback ended because its Source
// panicked — before the flow hears of it, so the cause is the panic.
func (a *callActor) panickedPlaying(ctx actor.Context, err error) {
	var pe *media.PanicError
	if errors.As(err, &pe) && len(a.order) > 0 {
		a.onLegPanic(ctx, &legPanic{legID: a.order[0], err: pe})
	}
}

// flowPanicked is what runFlow reports when the call flow panicked.
func flowPanicked(c *Call, r any) error {
	c.log.Error("call flow panicked; ending the call", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return fmt.Errorf("framework: call flow panicked: %v", r)
}
