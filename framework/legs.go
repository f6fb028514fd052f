package framework

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// LegKind says what carries a leg's signaling and media.
type LegKind uint8

// Leg kinds. LegOther covers transports registered by other packages.
const (
	LegOther LegKind = iota
	LegSIP
	LegWebRTC
	LegMemory
)

func (k LegKind) String() string {
	switch k {
	case LegSIP:
		return "sip"
	case LegWebRTC:
		return "webrtc"
	case LegMemory:
		return "memory"
	}
	return "other"
}

// MarshalText writes the kind as its name.
func (k LegKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a kind's name (an unknown name is LegOther).
func (k *LegKind) UnmarshalText(b []byte) error { *k = legKindOf(string(b)); return nil }

// legKindOf maps a transport's Kind string to a LegKind.
func legKindOf(s string) LegKind {
	switch s {
	case "sip":
		return LegSIP
	case "webrtc":
		return LegWebRTC
	case "memory":
		return LegMemory
	}
	return LegOther
}

// LegState is where a leg is in its life.
type LegState uint8

// Leg states.
const (
	LegRinging LegState = iota
	LegAnswered
	LegEnded
)

func (s LegState) String() string {
	switch s {
	case LegRinging:
		return "ringing"
	case LegAnswered:
		return "answered"
	}
	return "ended"
}

// MarshalText writes the state as its name.
func (s LegState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *LegState) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ringing":
		*s = LegRinging
	case "answered":
		*s = LegAnswered
	case "ended":
		*s = LegEnded
	default:
		return fmt.Errorf("framework: unknown leg state %q", b)
	}
	return nil
}

// ErrNoLeg is returned for a leg ID the server does not know (never
// existed, or ended).
var ErrNoLeg = errors.New("framework: no such leg")

// Leg is a handle on one leg — a phone, a trunk call, a browser — by its
// ID. The leg may move between calls and rooms while it talks (Move); the
// handle follows it: its verbs reach whoever holds the leg now. A Leg is
// cheap and safe to use from any goroutine.
type Leg struct {
	srv *Server
	e   *legEntry
}

// legEntry is the server's record of a live leg: who holds it (a call or
// a room actor) and its state, updated by that holder. It is node-local:
// it keeps the leg's live signaling handle (and through it the media
// stream) and its tap, which messages never carry — they name the leg by
// ID and the actor that receives them looks it up here.
type legEntry struct {
	id, user, from, to string
	kind               LegKind
	sig                Signaling
	holder             atomic.Pointer[actor.PID]
	where              atomic.Pointer[string] // "call:ID" or "room:NAME"
	state              atomic.Uint32
	// tap is Leg.Tap's sink. Only the leg's holder touches it; a move
	// hands it on with the leg (the message is the happens-before).
	tap media.Sink

	// What the leg reports (DTMF, chat, signals, its end, ...) goes to
	// its current leg actor through deliver. Between two holders (a
	// move: the old leg actor stopped, the new one not yet spawned) it
	// waits in pending, and the next leg actor gets it first.
	mu        sync.Mutex
	actor     *actor.PID // the leg actor now; nil between holders
	pending   []any
	listening bool // the leg's callbacks are set (once per leg)
}

// maxPendingLegMessages bounds what a leg keeps between two holders.
const maxPendingLegMessages = 64

// deliver sends m to the leg's current leg actor, or keeps it for the
// next one.
func (e *legEntry) deliver(root *actor.RootContext, m any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.actor == nil {
		if len(e.pending) < maxPendingLegMessages {
			e.pending = append(e.pending, m)
		}
		return
	}
	root.Send(e.actor, m) // under mu: after anything pending, in order
}

// attach makes pid the leg's actor and hands it what waited; it reports
// whether the leg's callbacks are still to be set.
func (e *legEntry) attach(root *actor.RootContext, pid *actor.PID) (listen bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.actor = pid
	for _, m := range e.pending {
		root.Send(pid, m)
	}
	e.pending = nil
	listen, e.listening = !e.listening, true
	return listen
}

// detach stops deliveries to pid (the leg is leaving its holder): what
// the leg reports from now on waits for the next leg actor.
func (e *legEntry) detach(pid *actor.PID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.actor != nil && e.actor.Equal(pid) {
		e.actor = nil
	}
}

// legRegistry is every live leg of a server, by ID.
type legRegistry struct {
	mu   sync.Mutex
	legs map[string]*legEntry
}

// add makes a live leg known by ID before any actor holds it (a dialled
// leg on its way to its call, a replacing leg on its way to the holder of
// the one it replaces).
func (r *legRegistry) add(sig Signaling) *legEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entryLocked(sig)
}

func (r *legRegistry) entryLocked(sig Signaling) *legEntry {
	if r.legs == nil {
		r.legs = map[string]*legEntry{}
	}
	e := r.legs[sig.ID()]
	if e == nil {
		e = &legEntry{id: sig.ID(), user: sig.User(), from: sig.From(), to: sig.To(), kind: legKindOf(sig.Kind()), sig: sig}
		r.legs[sig.ID()] = e
	}
	return e
}

func (r *legRegistry) register(sig Signaling, holder *actor.PID, where string) *legEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entryLocked(sig)
	e.holder.Store(holder)
	e.where.Store(&where)
	return e
}

// sig returns the live signaling of leg id, or nil.
func (r *legRegistry) sig(id string) Signaling {
	if e := r.get(id); e != nil {
		return e.sig
	}
	return nil
}

func (r *legRegistry) get(id string) *legEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.legs[id]
}

// ended forgets a leg once it is gone.
func (r *legRegistry) ended(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.legs[id]; e != nil {
		e.state.Store(uint32(LegEnded))
		delete(r.legs, id)
	}
}

func (r *legRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.legs)
}

// Leg returns a handle on the live leg with that ID, or nil.
func (s *Server) Leg(id string) *Leg {
	if e := s.legReg.get(id); e != nil {
		return &Leg{srv: s, e: e}
	}
	return nil
}

// ID returns the leg's ID (its SIP Call-ID for SIP legs).
func (l *Leg) ID() string { return l.e.id }

// Kind returns what carries the leg.
func (l *Leg) Kind() LegKind { return l.e.kind }

// User returns the called user (inbound) or the dialled target (outbound).
func (l *Leg) User() string { return l.e.user }

// From and To return the leg's From and To as signaling gave them.
func (l *Leg) From() string { return l.e.from }

// To returns the To of the leg's signaling.
func (l *Leg) To() string { return l.e.to }

// State returns the leg's state.
func (l *Leg) State() LegState { return LegState(l.e.state.Load()) }

// Where says who holds the leg now: "call:ID" or "room:NAME" ("" once
// ended).
func (l *Leg) Where() string {
	if l.State() == LegEnded {
		return ""
	}
	if w := l.e.where.Load(); w != nil {
		return *w
	}
	return ""
}

// legOp is what a per-leg verb asks of the leg's holder.
type legOp uint8

const (
	opHangup legOp = iota + 1
	opMute
	opUnmute
	opHold
	opUnhold
	opTaps
	opKick
)

func (o legOp) String() string {
	switch o {
	case opHangup:
		return "hangup"
	case opMute:
		return "mute"
	case opUnmute:
		return "unmute"
	case opHold:
		return "hold"
	case opUnhold:
		return "unhold"
	case opTaps:
		return "tap"
	case opKick:
		return "kick"
	}
	return "op"
}

// do sends a per-leg request to the leg's current holder and waits. A
// leg that moves while the request travels is followed once.
func (l *Leg) do(ctx context.Context, m *legCtl) error {
	for attempt := 0; attempt < 2; attempt++ {
		if l.State() == LegEnded {
			return fmt.Errorf("framework: leg %s: %s: %w", l.e.id, m.Op, ErrHangup)
		}
		pid := l.e.holder.Load()
		if pid == nil {
			return fmt.Errorf("framework: leg %s: %w", l.e.id, ErrNoLeg)
		}
		r, err := l.srv.ask(ctx, pid, m)
		if err == nil {
			err = r.Err.Err()
		}
		switch {
		case errors.Is(err, errNotHere):
			continue
		case err != nil:
			return fmt.Errorf("framework: leg %s: %s: %w", l.e.id, m.Op, err)
		}
		return nil
	}
	return fmt.Errorf("framework: leg %s: %s: %w", l.e.id, m.Op, ErrNoLeg)
}

// errNotHere tells a per-leg request that the leg left this holder.
var errNotHere = errors.New("leg moved")

// Hangup ends the leg (BYE for SIP). The call or room it was in goes on
// without it.
func (l *Leg) Hangup(ctx context.Context) error {
	return l.do(ctx, &legCtl{LegID: l.e.id, Op: opHangup})
}

// Mute stops what the leg says from reaching anyone (in a bridge or a
// room); it still hears. Unmute undoes it.
func (l *Leg) Mute(ctx context.Context) error { return l.do(ctx, &legCtl{LegID: l.e.id, Op: opMute}) }

// Unmute lets the leg be heard again.
func (l *Leg) Unmute(ctx context.Context) error {
	return l.do(ctx, &legCtl{LegID: l.e.id, Op: opUnmute})
}

// Hold puts the leg on hold (a re-INVITE offering sendonly for SIP).
func (l *Leg) Hold(ctx context.Context) error { return l.do(ctx, &legCtl{LegID: l.e.id, Op: opHold}) }

// Unhold resumes two-way audio with the leg.
func (l *Leg) Unhold(ctx context.Context) error {
	return l.do(ctx, &legCtl{LegID: l.e.id, Op: opUnhold})
}

// Tap sends what the leg says, decoded, to sink (nil removes it) beside
// whatever else consumes it — a bridge, a room, a recording — wherever the
// leg is or moves. The sink runs on the media path and must not block.
func (l *Leg) Tap(ctx context.Context, sink media.Sink) error {
	id := l.srv.objs.put(sink)
	defer l.srv.objs.drop(id)
	return l.do(ctx, &legCtl{LegID: l.e.id, Op: opTaps, SinkID: id})
}

// Move moves the leg, talking, to another call or room (see Server.Move).
func (l *Leg) Move(ctx context.Context, to Destination, opts JoinOptions) error {
	return l.srv.Move(ctx, l.e.id, to, opts)
}

// LegInfo describes one leg of a call or room.
type LegInfo struct {
	ID    string   `json:"id"`
	Kind  LegKind  `json:"kind"`
	User  string   `json:"user,omitempty"`
	From  string   `json:"from,omitempty"`
	State LegState `json:"state"`
	Muted bool     `json:"muted,omitempty"`
	// Mode is how the leg takes part in a room or a call's mix.
	Mode Mode `json:"mode,omitempty"`
}

// Legs returns the call's live legs, the caller first.
func (c *Call) Legs(ctx context.Context) ([]*Leg, error) {
	infos, err := c.legInfos(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Leg
	for _, in := range infos {
		if l := c.srv.Leg(in.ID); l != nil {
			out = append(out, l)
		}
	}
	return out, nil
}

func (c *Call) legInfos(ctx context.Context) ([]LegInfo, error) {
	if err := c.ended(); err != nil {
		return nil, err
	}
	r, err := c.ask(ctx, &legsReq{})
	if err != nil {
		return nil, err
	}
	return r.Legs, nil
}

// onLegsReq answers Legs from the call actor.
func (a *callActor) onLegsReq(ctx actor.Context, m *legsReq) {
	var out []LegInfo
	for _, id := range a.order {
		l := a.legs[id]
		if l == nil || l.ended {
			continue
		}
		st := LegRinging
		if l.answered {
			st = LegAnswered
		}
		in := LegInfo{ID: id, Kind: legKindOf(l.sig.Kind()), User: l.sig.User(), From: l.sig.From(), State: st, Muted: l.muted}
		if o, ok := a.convOpts[id]; ok {
			in.Mode = o.Mode
		}
		out = append(out, in)
	}
	replyWith(ctx, m.ReplyAddr, &Reply{Legs: slices.Clip(out)})
}

// Codec names the codec the leg's media uses now, as "NAME/RATE" (for
// example "PCMU/8000"); framework bridges two legs without transcoding
// when theirs are the same.
func (l *Leg) Codec() string {
	c := l.e.sig.Endpoint().Config().Codec
	return c.Name + "/" + strconv.Itoa(c.ClockRate)
}
