package framework

import (
	"context"
	"errors"
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

// Messages between a call actor and its leg actors.
type (
	legAnswer struct{ reply chan error }
	legReject struct {
		code  int
		reply chan error
	}
	legHangup   struct{ reply chan error }
	legOpResult struct {
		op    string
		err   error
		reply chan error
	}
	legEnded struct {
		legID string
		cause error
	}
	legAnswered struct{ legID string }
	legDTMF     struct {
		legID string
		ev    media.DTMFEvent
	}
	legWatch struct{}
	legChat  struct {
		legID, contentType, text string
	}
	legSendChat struct {
		text  string
		reply chan error
	}
)

// legActor owns one leg's signaling. Blocking signaling work (waiting for
// an ACK, sending BYE) runs in a goroutine whose result comes back as a
// message, so the mailbox never blocks.
type legActor struct {
	sig      Signaling
	answered bool
	ended    bool
	stop     chan struct{} // closed when the actor stops (the leg may live on, moved)
}

// mediaUpdater is what a leg needs to report renegotiated media
// (re-INVITE, UPDATE): sip.Leg has it.
type mediaUpdater interface {
	OnMediaUpdate(fn func(media.StreamConfig))
}

// legMediaUpdate tells the holder a leg's codec, address or direction
// changed.
type legMediaUpdate struct {
	legID string
	cfg   media.StreamConfig
}

func (a *legActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.sig.Endpoint().OnDTMF(func(ev media.DTMFEvent) {
			root.Send(self, &legDTMF{legID: a.sig.ID(), ev: ev})
		})
		a.sig.OnChat(func(ct, text string) {
			root.Send(self, &legChat{legID: a.sig.ID(), contentType: ct, text: text})
		})
		if sg, ok := a.sig.(signalable); ok {
			sg.OnSignal(func(name string, payload []byte) {
				root.Send(self, &legSignal{legID: a.sig.ID(), name: name, payload: payload})
			})
		}
		a.sig.Endpoint().OnPanic(func(pe *media.PanicError) {
			root.Send(self, &legPanic{legID: a.sig.ID(), err: pe})
		})
		if tr, ok := a.sig.(transferable); ok {
			parent, legID := ctx.Parent(), a.sig.ID()
			tr.OnTransfer(func(t *sip.Transfer) error {
				reply := make(chan error, 1)
				root.Send(parent, &legTransfer{legID: legID, t: t, reply: reply})
				select {
				case err := <-reply:
					return err
				case <-time.After(2 * time.Second):
					return errors.New("the call did not decide in time")
				}
			})
		}
		if mu, ok := a.sig.(mediaUpdater); ok {
			legID := a.sig.ID()
			mu.OnMediaUpdate(func(cfg media.StreamConfig) {
				root.Send(self, &legMediaUpdate{legID: legID, cfg: cfg})
			})
		}
		done, stop := a.sig.Done(), a.stop
		go func() {
			select {
			case <-done:
				root.Send(self, &legWatch{})
			case <-stop:
			}
		}()
	case *actor.Stopped:
		close(a.stop)
	case *legMediaUpdate:
		ctx.Send(ctx.Parent(), m)
	case *legWatch:
		if !a.ended {
			a.ended = true
			ctx.Send(ctx.Parent(), &legEnded{legID: a.sig.ID(), cause: a.sig.Err()})
		}
	case *legDTMF:
		ctx.Send(ctx.Parent(), m)
	case *legChat, *legSignal, *legPanic:
		ctx.Send(ctx.Parent(), m)
	case *legSendChat:
		a.run(ctx, "chat", m.reply, func() error { return a.sig.SendChat(context.Background(), m.text) })
	case *legMarkAnswered:
		a.answered = true
	case *legAnswer:
		if a.answered {
			m.reply <- nil
			return
		}
		a.run(ctx, "answer", m.reply, func() error { return a.sig.Answer(context.Background()) })
	case *legReject:
		a.run(ctx, "reject", m.reply, func() error { return a.sig.Reject(m.code, "") })
	case *legHangup:
		a.run(ctx, "hangup", m.reply, func() error { return a.sig.Hangup(context.Background()) })
	case *legOpResult:
		if m.op == "answer" && m.err == nil && !a.answered {
			a.answered = true
			ctx.Send(ctx.Parent(), &legAnswered{legID: a.sig.ID()})
		}
		if m.reply != nil {
			m.reply <- m.err
		}
	}
}

func (a *legActor) run(ctx actor.Context, op string, reply chan error, fn func() error) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		err := fn()
		root.Send(self, &legOpResult{op: op, err: err, reply: reply})
	}()
}
