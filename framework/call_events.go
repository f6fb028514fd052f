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
	return c.request(ctx, "signal "+name, &publishReq{Type: EventSignal, Signal: &data})
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
	r := &publishReq{LegID: legID, Type: typ}
	switch d := data.(type) {
	case SignalData:
		r.Signal = &d
	case PresenceData:
		r.Presence = &d
	case nil:
	default:
		return fmt.Errorf("framework: publish %s: data of type %T cannot travel to the call", typ, data)
	}
	return c.request(ctx, "publish "+typ.String(), r)
}

// data returns the event data a publishReq carries.
func (m *publishReq) data() any {
	switch {
	case m.Signal != nil:
		return *m.Signal
	case m.Presence != nil:
		return *m.Presence
	}
	return nil
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
// reply, if set, gets the result.
func (a *callActor) ringInBackground(ctx actor.Context, sig Signaling, reply ReplyAddr) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() { root.Send(self, &ringDone{LegID: sig.ID(), Err: errData(sig.Ringing()), ReplyAddr: reply}) }()
}

// onSessionMessage handles the event-stream messages; false if m is not
// one of them.
func (a *callActor) onSessionMessage(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *publishReq:
		if a.ended {
			replyTo(ctx, m.ReplyAddr, ErrHangup)
			return true
		}
		a.publish(m.LegID, m.Type, m.data())
		replyTo(ctx, m.ReplyAddr, nil)
	case *chatReq:
		a.sendChat(ctx, "", m.Text, m.ReplyAddr)
	case *legChat:
		a.publish(m.LegID, EventChat, ChatData{ContentType: m.ContentType, Text: m.Text})
		a.sendChat(ctx, m.LegID, m.Text, ReplyAddr{})
	case *legSignal:
		a.publish(m.LegID, EventSignal, SignalData{Name: m.Name, Payload: m.Payload})
	case *ringReq:
		a.withFirstLeg(ctx, m.ReplyAddr, func(l *legRef) { a.ringInBackground(ctx, l.sig, m.ReplyAddr) })
	case *ringDone:
		if m.Err != nil {
			a.log.Debug("180 failed", "leg_id", m.LegID, "error", m.Err.Err())
		} else {
			if l := a.legs[m.LegID]; l != nil && !l.answered && !l.ended {
				a.publish(m.LegID, EventLegRinging, nil)
			}
		}
		replyWith(ctx, m.ReplyAddr, &Reply{Err: m.Err})
	case *legPanic:
		a.onLegPanic(ctx, m)
	case *holdDone:
		a.onHoldDone(ctx, m)
	default:
		return false
	}
	return true
}

// chatRound is one SendMessage waiting for its legs' answers.
type chatRound struct {
	reply   ReplyAddr
	pending int
	errs    []error
}

// chatPart is one leg's part of a chatRound.
type chatPart struct {
	round *chatRound
	legID string
}

// sendChat sends text to every answered leg other than from (the leg it
// came from, "" for the application) as an in-dialog MESSAGE, or the
// browser's chat. With a reply (Call.SendMessage) the text is published
// first, and the legs answer to this actor, which replies once all have:
// whether every leg accepted it.
func (a *callActor) sendChat(ctx actor.Context, from, text string, reply ReplyAddr) {
	wants := reply.ReplyTo != nil
	if wants {
		if a.ended {
			replyTo(ctx, reply, ErrHangup)
			return
		}
		a.publish("", EventChat, ChatData{ContentType: "text/plain", Text: text})
	}
	round := &chatRound{reply: reply}
	for _, id := range a.order {
		l := a.legs[id]
		if id == from || l.ended || !l.answered {
			continue
		}
		m := &legSendChat{Text: text}
		if wants {
			a.nextReq++
			if a.chats == nil {
				a.chats = map[uint64]chatPart{}
			}
			a.chats[a.nextReq] = chatPart{round: round, legID: id}
			m.ReplyAddr = ReplyAddr{ReplyTo: ctx.Self(), ReqID: a.nextReq}
			round.pending++
		}
		ctx.Send(l.pid, m)
	}
	if wants && round.pending == 0 {
		replyTo(ctx, reply, errors.New("no answered leg to carry the message"))
	}
}

// onChatReply counts one leg's answer to a SendMessage.
func (a *callActor) onChatReply(ctx actor.Context, r *Reply) {
	p, ok := a.chats[r.ReqID]
	if !ok {
		return
	}
	delete(a.chats, r.ReqID)
	if err := r.Err.Err(); err != nil {
		a.log.Debug("chat: a leg did not take the message", "leg_id", p.legID, "error", err)
		p.round.errs = append(p.round.errs, fmt.Errorf("leg %s: %w", p.legID, err))
	}
	if p.round.pending--; p.round.pending == 0 {
		replyTo(ctx, p.round.reply, errors.Join(p.round.errs...))
	}
}

// onLegPanic ends the call whose user code panicked on the media path:
// one log line with the stack, then every leg is hung up and the CDR says
// where it panicked.
func (a *callActor) onLegPanic(ctx actor.Context, m *legPanic) {
	if a.ended || a.ending {
		return
	}
	cause := "panic in " + m.Panic.Where
	a.log.Error("user code panicked on the media path; ending the call", "leg_id", m.LegID,
		"where", m.Panic.Where, "panic", m.Panic.Value, "stack", m.Panic.Stack)
	a.cause = cause
	a.hangupAll(ctx, cause)
}

// flowPanicked is what runFlow reports when the call flow panicked.
func flowPanicked(c *Call, r any) error {
	c.log.Error("call flow panicked; ending the call", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return fmt.Errorf("framework: call flow panicked: %v", r)
}
