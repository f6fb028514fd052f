package framework

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// Call is the call flow's handle on one call. Its methods send requests to
// the call actor and wait for the reply; they are meant for the flow's own
// goroutine but are safe to call from others.
type Call struct {
	srv    *Server
	id     string
	user   string
	trunk  string
	source netip.Addr
	hdr    headerReader // the first leg's signalling, if it has headers (SIP)
	auth   string
	from   string
	caller CallerID
	to     string
	pid    *actor.PID
	root   *actor.RootContext
	log    *slog.Logger
	ctx    context.Context // ends with the call, cause ErrHangup
	tts    *audio.TTS
	start  time.Time // when the call was created (Server.Calls)

	// stream is the call's event log; the call actor appends, any
	// goroutine subscribes.
	stream *EventLog
	// flowCtx ends when the call flow returns (Events' subscription).
	flowCtx    context.Context
	eventsOnce sync.Once
	events     <-chan Event
	// Digits are DTMF events on the log. digitCursor is the Seq up to
	// which CollectDigits (and Record's stop digit) consumed them: the
	// type-ahead is every dtmf event after it. lastDigit is the Seq of
	// the newest dtmf event (set by the call actor).
	digitCursor atomic.Uint64
	lastDigit   atomic.Uint64
}

// ID returns the call's id (the Call-ID of its first SIP leg).
func (c *Call) ID() string { return c.id }

// Server returns the server the call runs on (to move legs, reach rooms
// and other calls).
func (c *Call) Server() *Server { return c.srv }

// User returns the called user: the request-URI user of the INVITE.
func (c *Call) User() string { return c.user }

// Trunk returns the trunk the call came in on ("" for phones and
// browsers). Its User is then the dialled DID.
func (c *Call) Trunk() string { return c.trunk }

// SignalingSource returns the IP address the caller's signaling came from
// (for SIP the INVITE's source: the previous hop, a proxy's when one is in
// front), or the zero Addr when the transport does not say (browsers,
// calls the server placed).
func (c *Call) SignalingSource() netip.Addr { return c.source }

// headerReader is signalling that keeps the request that started it.
type headerReader interface{ Header(name string) string }

// Header returns the first value of the named header of the SIP INVITE
// that started the call ("" when absent, and for browser calls and calls
// the server placed): a trunk's X- headers, User-to-User, and the like.
// Header values come from the network: check them before trusting them.
func (c *Call) Header(name string) string {
	if c.hdr == nil {
		return ""
	}
	return c.hdr.Header(name)
}

// AuthUser returns the directory user the caller authenticated as (SIP
// digest on the INVITE), or "" for an unauthenticated caller. Use it
// before letting a call reach anything that costs money, like a trunk.
func (c *Call) AuthUser() string { return c.auth }

// From returns the caller as the From header gave it, raw (display name,
// URI and tag). Caller has it parsed.
func (c *Call) From() string { return c.from }

// Caller returns who is calling: display name, number (the URI's user
// part) and URI — from a trusted trunk's P-Asserted-Identity when it sent
// one, else from From — and whether they asked for privacy. Dial passes
// it on by default. For a call made by Server.Originate it is the party
// that answered.
func (c *Call) Caller() CallerID { return c.caller }

// To returns the To header of the first leg.
func (c *Call) To() string { return c.to }

// Logger returns a logger with the call_id attribute set.
func (c *Call) Logger() *slog.Logger { return c.log }

// Context returns a context that is cancelled, with cause ErrHangup, when
// the call ends.
func (c *Call) Context() context.Context { return c.ctx }

// Events returns the call's event stream from its first event: call and
// leg state changes, digits, chat, signals, playback. Every call returns
// the same channel; it is closed after the call.ended event, or when the
// call flow returns. It is backed by a Subscription (see Subscribe), so a
// reader that falls more than the replay ring (Config.EventReplay) behind
// receives an EventOverflow marker instead of losing events silently.
func (c *Call) Events() <-chan Event {
	c.eventsOnce.Do(func() {
		c.events = c.stream.Subscribe(c.flowCtx, 0).C()
	})
	return c.events
}

// Subscribe returns a new subscription to the call's event stream, from
// the event after Seq from (0: from the start, as far as the replay ring
// reaches; FromNow: only new events). Any number may exist; none can
// slow the call down. It ends with ctx, Close, or after call.ended.
func (c *Call) Subscribe(ctx context.Context, from uint64) *Subscription {
	return c.stream.Subscribe(ctx, from)
}

// request sends msg to the call actor and waits for its reply, for ctx, or
// for the end of the call.
func (c *Call) request(ctx context.Context, verb string, msg request) error {
	r, err := c.ask(ctx, msg)
	if err == nil {
		err = r.Err.Err()
	}
	return wrapVerb(verb, err)
}

// ask sends msg to the call actor — found by the call's ID — and returns
// its Reply; the error is ErrHangup once the call has ended, or ctx's.
func (c *Call) ask(ctx context.Context, msg request) (*Reply, error) {
	if err := c.ended(); err != nil {
		return nil, err
	}
	w := c.srv.inbox.wait(msg)
	defer w.done()
	c.root.Send(c.pid, msg)
	return c.await(ctx, w)
}

// await waits for w's reply, ctx, or the end of the call.
func (c *Call) await(ctx context.Context, w *waiter) (*Reply, error) {
	select {
	case r := <-w.ch:
		return r, nil
	case <-ctx.Done():
		if err := c.ended(); err != nil {
			return nil, err
		}
		return nil, ctx.Err()
	case <-c.ctx.Done():
		return nil, ErrHangup
	}
}

func (c *Call) ended() error {
	if c.ctx.Err() != nil {
		return ErrHangup
	}
	return nil
}

// Answer answers the call (200 OK for SIP) and returns once it is
// established. Answering an answered call does nothing.
func (c *Call) Answer(ctx context.Context) error {
	return c.request(ctx, "answer", &answerReq{})
}

// Ring tells the caller the call is ringing (180 for SIP).
func (c *Call) Ring(ctx context.Context) error {
	return c.request(ctx, "ring", &ringReq{})
}

// Reject refuses an unanswered call with a status such as 486 (busy), 603
// (decline) or 404, and ends it.
func (c *Call) Reject(ctx context.Context, code int) error {
	err := c.request(ctx, "reject", &rejectReq{Code: code})
	if errors.Is(err, ErrHangup) {
		return nil // rejecting ends the call; the end may overtake the reply
	}
	return err
}

// Hangup ends the call: every leg is hung up (BYE) and the call flow's ctx
// is cancelled. It returns once the legs are gone.
func (c *Call) Hangup(ctx context.Context) error {
	err := c.request(ctx, "hangup", &hangupReq{})
	if errors.Is(err, ErrHangup) {
		return nil
	}
	return err
}

// Play plays the sources one after the other to the caller and returns when
// the last one ends. An unanswered call is answered first. Cancelling ctx
// stops the playback. Sources are read on the media path and must not block.
func (c *Call) Play(ctx context.Context, srcs ...media.Source) error {
	if len(srcs) == 0 {
		return nil
	}
	if err := c.Answer(ctx); err != nil {
		return err
	}
	src := srcs[0]
	if len(srcs) > 1 {
		src = media.Sequence(srcs...)
	}
	p := &playReq{SourceID: c.srv.objs.put(src)}
	defer c.srv.objs.drop(p.SourceID) // the actor took it, unless it never got there
	err := c.request(ctx, "play", p)
	if err != nil && !errors.Is(err, ErrHangup) && ctx.Err() != nil {
		c.root.Send(c.pid, &stopPlayReq{PlayID: p.ReqID})
	}
	return err
}

// CollectOptions configure CollectDigits. The zero value collects one digit
// with a 5 s first-digit and a 3 s inter-digit timeout.
type CollectOptions struct {
	// Max is how many digits to collect at most (default 1), not counting
	// a terminator: with Max 4 and Terminators "#", "1234" returns as soon
	// as the 4 is pressed and "12#" returns "12".
	Max int
	// Terminators end collection early; the terminator is not returned
	// and not counted. E.g. "#". A terminator pressed first returns "".
	Terminators string
	// FirstDigitTimeout is how long to wait for the first digit, counted
	// from the end of Prompt (default 5 s).
	FirstDigitTimeout time.Duration
	// InterDigitTimeout is how long to wait for each further digit
	// (default 3 s).
	InterDigitTimeout time.Duration
	// Prompt, if set, is played first; the first digit interrupts it.
	Prompt media.Source
}

// CollectDigits waits for DTMF digits and returns them. Digits pressed
// before the call (type-ahead, e.g. during a previous prompt) count: the
// type-ahead is every digit since the last one a CollectDigits (or a
// Record's stop digit) used, as far back as the event replay ring
// reaches; the digits it uses, terminator included, are consumed. Digits
// are events on the call's stream, so every reader has its own view: a
// Record or a subscriber running beside CollectDigits sees the same
// digits. It returns ErrNoInput when no digit arrived, and the digits so
// far when the inter-digit timeout expires.
func (c *Call) CollectDigits(ctx context.Context, opts CollectOptions) (string, error) {
	if opts.Max <= 0 {
		opts.Max = 1
	}
	if opts.FirstDigitTimeout <= 0 {
		opts.FirstDigitTimeout = 5 * time.Second
	}
	if opts.InterDigitTimeout <= 0 {
		opts.InterDigitTimeout = 3 * time.Second
	}
	if err := c.Answer(ctx); err != nil {
		return "", err
	}
	sub := c.stream.Subscribe(ctx, c.digitCursor.Load())
	defer sub.Close()
	digits := sub.C()
	var promptDone <-chan *Reply
	var prompt *playReq
	if opts.Prompt != nil && c.lastDigit.Load() <= c.digitCursor.Load() {
		prompt = c.startPrompt(opts.Prompt)
		w := c.srv.inbox.wait(prompt)
		defer w.done()
		promptDone = w.ch
		c.root.Send(c.pid, prompt)
		defer c.root.Send(c.pid, &stopPlayReq{PlayID: prompt.ReqID})
		defer c.srv.objs.drop(prompt.SourceID)
	}
	var got strings.Builder
	var timer *time.Timer
	if promptDone == nil {
		timer = time.NewTimer(opts.FirstDigitTimeout)
	} else {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	defer timer.Stop()
	for {
		select {
		case r := <-promptDone:
			promptDone = nil
			if errors.Is(r.Err.Err(), ErrHangup) {
				return got.String(), wrapVerb("collect digits", ErrHangup)
			}
			if got.Len() == 0 {
				timer.Reset(opts.FirstDigitTimeout)
			}
		case ev, ok := <-digits:
			if !ok {
				// The stream ended: the call is over.
				return got.String(), wrapVerb("collect digits", ErrHangup)
			}
			d, isDigit := digitOf(ev)
			if !isDigit {
				continue
			}
			c.consumeDigits(ev.Seq)
			if prompt != nil && got.Len() == 0 {
				c.root.Send(c.pid, &stopPlayReq{PlayID: prompt.ReqID})
				promptDone = nil
			}
			if strings.ContainsRune(opts.Terminators, d) {
				if got.Len() == 0 {
					return "", nil
				}
				return got.String(), nil
			}
			got.WriteRune(d)
			if got.Len() >= opts.Max {
				return got.String(), nil
			}
			timer.Reset(opts.InterDigitTimeout)
		case <-timer.C:
			if got.Len() == 0 {
				return "", wrapVerb("collect digits", ErrNoInput)
			}
			return got.String(), nil
		case <-ctx.Done():
			if c.ctx.Err() != nil {
				return got.String(), wrapVerb("collect digits", ErrHangup)
			}
			return got.String(), wrapVerb("collect digits", ctx.Err())
		case <-c.ctx.Done():
			return got.String(), wrapVerb("collect digits", ErrHangup)
		}
	}
}

// digitOf returns the digit of a dtmf event.
func digitOf(ev Event) (rune, bool) {
	if ev.Type != EventDTMF {
		return 0, false
	}
	d, ok := ev.Data.(DTMFData)
	if !ok || d.Digit == "" {
		return 0, false
	}
	return []rune(d.Digit)[0], true
}

// consumeDigits moves the type-ahead cursor to seq (never back).
func (c *Call) consumeDigits(seq uint64) {
	for {
		cur := c.digitCursor.Load()
		if seq <= cur || c.digitCursor.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// FlushDigits discards digits typed ahead and not collected yet.
func (c *Call) FlushDigits() { c.consumeDigits(c.stream.Last()) }

// Listen sends the caller's audio, decoded to 20 ms PCM frames, to sink
// until the call ends or Listen is called again (nil stops it). The sink is
// called on the media path and must not block.
func (c *Call) Listen(ctx context.Context, sink media.Sink) error {
	m := &listenReq{SinkID: c.srv.objs.put(sink)}
	defer c.srv.objs.drop(m.SinkID)
	return c.request(ctx, "listen", m)
}

// startPrompt returns a play request for a prompt played while the flow
// does something else (CollectDigits, DetectSpeech); the caller sends it
// and drops its SourceID when done.
func (c *Call) startPrompt(src media.Source) *playReq {
	return &playReq{SourceID: c.srv.objs.put(src)}
}

// SendMessage sends a text message to every answered leg of the call
// that can carry chat (a SIP MESSAGE inside each leg's dialog) and waits
// until each has accepted it; the error names the legs that did not. The
// message is also an EventChat event (with an empty LegID) on the call's
// stream. Messages from a leg arrive as EventChat events too, and are
// passed on to the call's other legs.
func (c *Call) SendMessage(ctx context.Context, text string) error {
	return c.request(ctx, "send message", &chatReq{Text: text})
}
