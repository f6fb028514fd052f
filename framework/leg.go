package framework

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

// Signaling is what a transport package (sip, bridge) hands the framework
// for each leg: signaling state plus the leg's media endpoint. It is not
// SIP-specific; sip.Leg implements it and so will browser legs.
type Signaling interface {
	ID() string
	Kind() string // "sip", "webrtc"
	Inbound() bool
	User() string // called user (inbound) or dialled target (outbound)
	From() string
	To() string
	Ringing() error
	Answer(ctx context.Context) error
	Reject(code int, reason string) error
	Hangup(ctx context.Context) error
	Endpoint() *media.Endpoint
	Done() <-chan struct{} // closed when the leg has ended, for any reason
	Err() error            // why it ended
	// OnChat sets the callback for text messages the far end sends in the
	// call (SIP MESSAGE; the browser's chat).
	OnChat(fn func(contentType, text string))
	// SendChat sends a text message to the far end.
	SendChat(ctx context.Context, text string) error
}

// Messages between a call (or room) actor and its leg actors: plain data
// too; a leg actor answers verbs to the ReplyAddr they carry.
type (
	legAnswer struct{ ReplyAddr }
	legReject struct {
		Code int
		ReplyAddr
	}
	legHangup   struct{ ReplyAddr }
	legOpResult struct {
		Op  string
		Err *ErrorData `json:",omitempty"`
		ReplyAddr
	}
	legWatch    struct{}
	legSendChat struct {
		Text string
		ReplyAddr
	}
	legMarkAnswered struct{}
)

// legActor owns one leg's signaling while one call or room holds the leg
// (a move stops it and the new holder spawns another). Blocking
// signaling work (waiting for an ACK, sending BYE) runs in a goroutine
// whose result comes back as a message, so the mailbox never blocks.
// What the leg reports comes through its registry entry (listenLeg).
type legActor struct {
	srv      *Server
	sig      Signaling
	answered bool
	ended    bool
}

// endNotifier is a leg that calls back once it has ended (sip.Leg has
// it); for other legs listenLeg waits on Done in a goroutine.
type endNotifier interface {
	OnEnd(fn func())
}

// mediaUpdater is what a leg needs to report renegotiated media
// (re-INVITE, UPDATE): sip.Leg has it.
type mediaUpdater interface {
	OnMediaUpdate(fn func(media.StreamConfig))
}

// listenLeg sets, once per leg, the callbacks through which the leg
// reports to whichever leg actor holds it now (legEntry.deliver): they
// outlive moves, and what comes while the leg is between two holders
// waits for the next one instead of going to a stopped actor.
func listenLeg(srv *Server, e *legEntry, root *actor.RootContext) {
	sig, legID := e.sig, e.id
	sig.Endpoint().OnDTMF(func(ev media.DTMFEvent) {
		e.deliver(root, &legDTMF{LegID: legID, Digit: string(ev.Digit), Source: ev.Source})
	})
	sig.OnChat(func(ct, text string) {
		e.deliver(root, &legChat{LegID: legID, ContentType: ct, Text: text})
	})
	if sg, ok := sig.(signalable); ok {
		sg.OnSignal(func(name string, payload []byte) {
			e.deliver(root, &legSignal{LegID: legID, Name: name, Payload: payload})
		})
	}
	sig.Endpoint().OnPanic(func(pe *media.PanicError) {
		e.deliver(root, &legPanic{LegID: legID, Panic: panicData(pe)})
	})
	if tr, ok := sig.(transferable); ok {
		tr.OnTransfer(func(t *sip.Transfer) error {
			holder := e.holder.Load()
			if holder == nil {
				return errors.New("no call holds the leg")
			}
			id := srv.objs.put(t)
			defer srv.objs.drop(id) // the holder took it if it decided in time
			m := &legTransfer{LegID: legID, TransferID: id, Target: t.Target, ReferredBy: t.ReferredBy,
				Attended: t.Replaces != nil, ReplacesLeg: t.ReplacesLeg}
			w := srv.inbox.wait(m)
			defer w.done()
			root.Send(holder, m)
			select {
			case r := <-w.ch:
				return r.Err.Err()
			case <-time.After(2 * time.Second):
				return errors.New("the call did not decide in time")
			}
		})
	}
	if mu, ok := sig.(mediaUpdater); ok {
		mu.OnMediaUpdate(func(cfg media.StreamConfig) {
			e.deliver(root, &legMediaUpdate{LegID: legID, Codec: cfg.Codec.Name, Direction: cfg.Direction})
		})
	}
	if en, ok := sig.(endNotifier); ok {
		// A callback instead of a goroutine parked for the whole call
		// (its stack is most of what a held call costs).
		en.OnEnd(func() { e.deliver(root, &legWatch{}) })
	} else {
		go func() {
			<-sig.Done()
			e.deliver(root, &legWatch{})
		}()
	}
}

func (a *legActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *legMediaUpdate:
		ctx.Send(ctx.Parent(), m)
	case *legWatch:
		if !a.ended {
			a.ended = true
			if at := answeredAt(a.sig); !a.answered && !at.IsZero() {
				// Answered, then ended before the answer verb's result
				// came back (a BYE right behind the ACK): the call hears
				// of the answer first, so its CDR has it.
				a.answered = true
				ctx.Send(ctx.Parent(), &legAnswered{LegID: a.sig.ID(), At: at})
			}
			cause := ""
			if err := a.sig.Err(); err != nil {
				cause = causeString(err)
			}
			ctx.Send(ctx.Parent(), &legEnded{LegID: a.sig.ID(), Cause: cause})
		}
	case *legDTMF:
		ctx.Send(ctx.Parent(), m)
	case *legChat, *legSignal, *legPanic:
		ctx.Send(ctx.Parent(), m)
	case *legSendChat:
		text := m.Text
		a.run(ctx, "chat", m.ReplyAddr, func() error { return a.sig.SendChat(context.Background(), text) })
	case *legMarkAnswered:
		a.answered = true
	case *legAnswer:
		if a.answered {
			replyTo(ctx, m.ReplyAddr, nil)
			return
		}
		a.run(ctx, "answer", m.ReplyAddr, func() error { return a.sig.Answer(context.Background()) })
	case *legReject:
		code := m.Code
		a.run(ctx, "reject", m.ReplyAddr, func() error { return a.sig.Reject(code, "") })
	case *legHangup:
		a.run(ctx, "hangup", m.ReplyAddr, func() error { return a.sig.Hangup(context.Background()) })
	case *legOpResult:
		if m.Op == "answer" && m.Err == nil && !a.answered {
			a.answered = true
			ctx.Send(ctx.Parent(), &legAnswered{LegID: a.sig.ID(), At: answeredAt(a.sig)})
		}
		replyWith(ctx, m.ReplyAddr, &Reply{Err: m.Err})
	}
}

// answeredAt is when sig's call was answered, if sig knows (sip.Leg
// does: the ACK of its 2xx); zero otherwise.
func answeredAt(sig Signaling) time.Time {
	if a, ok := sig.(interface{ AnsweredAt() time.Time }); ok {
		return a.AnsweredAt()
	}
	return time.Time{}
}

// panicData is a media panic as plain data.
func panicData(pe *media.PanicError) PanicData {
	return PanicData{Where: pe.Where.String(), Value: fmt.Sprint(pe.Value), Stack: string(pe.Stack)}
}

func (a *legActor) run(ctx actor.Context, op string, reply ReplyAddr, fn func() error) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.srv.tasks.Go(func() {
		err := fn()
		root.Send(self, &legOpResult{Op: op, Err: errData(err), ReplyAddr: reply})
	})
}
