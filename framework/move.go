package framework

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// Mode is how a leg takes part in a room or a call's conversation.
type Mode uint8

// Modes. A supervisor uses Monitor to listen in, Whisper to coach one leg
// (JoinOptions.Coach) without the others hearing, and Barge to talk to
// everyone.
const (
	ModeNormal  Mode = iota // hears everyone, heard by everyone
	ModeMonitor             // hears everyone, heard by nobody
	ModeWhisper             // hears everyone, heard only by the Coach leg
	ModeBarge               // a supervisor talking to everyone: like Normal
)

func (m Mode) String() string {
	switch m {
	case ModeMonitor:
		return "monitor"
	case ModeWhisper:
		return "whisper"
	case ModeBarge:
		return "barge"
	}
	return "normal"
}

// MarshalText writes the mode as its name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a mode's name.
func (m *Mode) UnmarshalText(b []byte) error {
	for _, v := range []Mode{ModeNormal, ModeMonitor, ModeWhisper, ModeBarge} {
		if v.String() == string(b) {
			*m = v
			return nil
		}
	}
	return fmt.Errorf("framework: unknown mode %q", b)
}

// JoinOptions configure how a leg joins a room (Join) or arrives somewhere
// (Move).
type JoinOptions struct {
	// Muted joins as a listener: heard by nobody until unmuted.
	Muted bool
	// Mode is how the leg takes part (default ModeNormal).
	Mode Mode
	// Coach is the leg ID that alone hears a ModeWhisper leg.
	Coach string
	// Moderator marks the leg as a room's moderator (see RoomOptions).
	Moderator bool
}

// Destination is where Move takes a leg: a call or a room.
type Destination struct {
	call, room string
}

// ToCall is the call with that ID (Call.ID): the leg joins its
// conversation with the caller.
func ToCall(id string) Destination { return Destination{call: id} }

// ToRoom is the room with that name, created on first use.
func ToRoom(name string) Destination { return Destination{room: name} }

func (d Destination) String() string {
	if d.room != "" {
		return "room:" + d.room
	}
	return "call:" + d.call
}

// EventLegMoved and friends are published on the session a leg leaves and
// the one it enters. Data is a MoveData.
type MoveData struct {
	From string `json:"from,omitempty"` // "call:ID" or "room:NAME"
	To   string `json:"to,omitempty"`
	Mode Mode   `json:"mode,omitempty"`
	// FromSeq, on the leg.joined event of a move, is the Seq of the
	// matching leg.moved event in From's stream: the two ends of one move
	// name each other (a feed following the leg switches streams there).
	FromSeq uint64 `json:"from_seq,omitempty"`
}

// ErrLegMoved is returned by Dial when the party it bridged was moved to
// another call or room (the caller stays with the flow).
var ErrLegMoved = errors.New("framework: leg moved elsewhere")

// Move moves a live, answered leg — talking — from whatever call or room
// holds it to another call or a room, with no re-INVITE: its media is
// rewired in place, so it misses at most a packet or two. Moving the first
// leg of a call (its caller) out ends that call's flow; the call's other
// legs are hung up like when the caller hangs up. Moving the party a Dial
// bridged makes that Dial return ErrLegMoved.
func (s *Server) Move(ctx context.Context, legID string, to Destination, opts JoinOptions) error {
	e := s.legReg.get(legID)
	if e == nil {
		return fmt.Errorf("framework: move %s: %w", legID, ErrNoLeg)
	}
	var dst *actor.PID
	switch {
	case to.room != "":
		var release func()
		dst, release = s.rooms.acquire(s, to.room)
		defer release()
	case to.call != "":
		dst = s.callPID(to.call)
		if dst == nil {
			return fmt.Errorf("framework: move %s to %s: no such call", legID, to)
		}
	default:
		return fmt.Errorf("framework: move %s: empty destination", legID)
	}
	for attempt := 0; attempt < 2; attempt++ {
		holder := e.holder.Load()
		if holder == nil || LegState(e.state.Load()) == LegEnded {
			return fmt.Errorf("framework: move %s: %w", legID, ErrHangup)
		}
		r, err := s.ask(ctx, holder, &moveOut{LegID: legID, Dst: dst, To: to.String(), Opts: opts})
		if err == nil {
			err = r.Err.Err()
		}
		switch {
		case errors.Is(err, errNotHere):
			continue
		case err != nil:
			return fmt.Errorf("framework: move %s to %s: %w", legID, to, err)
		}
		return nil
	}
	return fmt.Errorf("framework: move %s: %w", legID, ErrNoLeg)
}

// onMoveOut lets one of the call's legs go to another call or room.
func (a *callActor) onMoveOut(ctx actor.Context, m *moveOut) {
	l := a.legs[m.LegID]
	if l == nil || l.ended {
		replyTo(ctx, m.ReplyAddr, errNotHere)
		return
	}
	if !l.answered {
		replyTo(ctx, m.ReplyAddr, ErrNotAnswered)
		return
	}
	if m.Dst.Equal(ctx.Self()) { // already here: a change of mode
		if slices.Contains(a.conv, m.LegID) {
			a.convAdd(m.LegID, m.Opts)
			a.rewire()
		}
		a.publish(m.LegID, EventLegMoved, MoveData{From: m.To, To: m.To, Mode: m.Opts.Mode})
		replyTo(ctx, m.ReplyAddr, nil)
		return
	}
	a.detachLeg(ctx, l)
	from := "call:" + a.call.id
	a.publish(m.LegID, EventLegMoved, MoveData{From: from, To: m.To, Mode: m.Opts.Mode})
	// Only the leg's ID travels: the destination finds its signaling,
	// media and tap in this node's leg registry.
	ctx.Send(m.Dst, &moveIn{LegID: m.LegID, From: from, FromSeq: a.call.stream.Last(), Opts: m.Opts, Muted: l.muted, ReplyAddr: m.ReplyAddr})
	a.afterLegGone(ctx, m.LegID, ErrLegMoved, "moved to "+m.To)
}

// detachLeg takes a leg out of this call without hanging it up: out of
// the conversation and the media topology, its leg actor stopped.
func (a *callActor) detachLeg(ctx actor.Context, l *legRef) {
	id := l.sig.ID()
	if a.conf != nil && len(a.order) > 0 && id == a.order[0] {
		a.leave(ctx, ErrLegMoved)
	}
	a.convRemove(id)
	a.rewire()
	l.ended = true // for this call: it is gone (it lives on where it moved)
	letLegGo(ctx, l.entry, l.pid, l.tap)
}

// letLegGo ends the current holder's part in a leg that lives on (a
// move): its taps go with it in its registry entry, what it reports
// waits for its next holder, and its leg actor here stops.
func letLegGo(ctx actor.Context, e *legEntry, pid *actor.PID, tap media.Sink) {
	e.sig.Endpoint().SetTaps(nil)
	e.tap = tap
	e.detach(pid)
	ctx.Stop(pid)
}

// onMoveIn takes a leg moved here into the conversation with the caller.
func (a *callActor) onMoveIn(ctx actor.Context, m *moveIn) {
	e := a.srv.legReg.get(m.LegID)
	if e == nil {
		replyTo(ctx, m.ReplyAddr, ErrHangup) // it ended on the way
		return
	}
	if a.ended || a.ending || len(a.order) == 0 || a.legs[a.order[0]].ended || !a.legs[a.order[0]].answered {
		a.moveFailed(ctx, m, e.sig, errors.New("the call is ending or its caller is not answered"))
		return
	}
	if a.conf != nil || (a.dial != nil && a.dial.legID == "") {
		a.moveFailed(ctx, m, e.sig, errors.New("the caller is in a room or being dialled"))
		return
	}
	if a.current != nil && a.stopPlay != nil {
		a.stopPlay() // the conversation takes the caller's audio
	}
	l := a.addLeg(ctx, e.sig, true)
	l.tap, l.muted = e.tap, m.Muted
	a.convAdd(a.order[0], a.convOpts[a.order[0]])
	a.convAdd(m.LegID, m.Opts)
	a.rewire()
	a.publish(m.LegID, EventLegJoined, MoveData{From: m.From, To: "call:" + a.call.id, Mode: m.Opts.Mode, FromSeq: m.FromSeq})
	a.log.Info("leg moved in", "leg_id", m.LegID, "from", m.From, "mode", m.Opts.Mode.String())
	replyTo(ctx, m.ReplyAddr, nil)
}

// moveFailed hangs up a leg that was let go by its old holder but cannot
// be taken here: it must not be left without an owner.
func (a *callActor) moveFailed(ctx actor.Context, m *moveIn, sig Signaling, err error) {
	a.log.Warn("move refused; hanging the leg up", "leg_id", m.LegID, "error", err)
	a.srv.legReg.ended(m.LegID)
	go func() { _ = sig.Hangup(context.Background()) }()
	replyTo(ctx, m.ReplyAddr, err)
}
