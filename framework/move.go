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
}

// ErrLegMoved is returned by Dial when the party it bridged was moved to
// another call or room (the caller stays with the flow).
var ErrLegMoved = errors.New("framework: leg moved elsewhere")

type (
	// moveOut asks the leg's holder to let it go to dst.
	moveOut struct {
		legID string
		dst   *actor.PID
		to    Destination
		opts  JoinOptions
		reply chan error
	}
	// moveIn hands a live, answered leg to its new holder.
	moveIn struct {
		sig   Signaling
		from  string
		opts  JoinOptions
		tap   media.Sink
		muted bool
		reply chan error
	}
)

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
		m := &moveOut{legID: legID, dst: dst, to: to, opts: opts, reply: make(chan error, 1)}
		s.root.Send(holder, m)
		select {
		case err := <-m.reply:
			if errors.Is(err, errNotHere) {
				continue
			}
			if err != nil {
				return fmt.Errorf("framework: move %s to %s: %w", legID, to, err)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("framework: move %s to %s: %w", legID, to, ctx.Err())
		}
	}
	return fmt.Errorf("framework: move %s: %w", legID, ErrNoLeg)
}

// onMoveOut lets one of the call's legs go to another call or room.
func (a *callActor) onMoveOut(ctx actor.Context, m *moveOut) {
	l := a.legs[m.legID]
	if l == nil || l.ended {
		m.reply <- errNotHere
		return
	}
	if !l.answered {
		m.reply <- ErrNotAnswered
		return
	}
	if m.dst.Equal(ctx.Self()) { // already here: a change of mode
		if slices.Contains(a.conv, m.legID) {
			a.convAdd(m.legID, m.opts)
			a.rewire()
		}
		a.publish(m.legID, EventLegMoved, MoveData{From: m.to.String(), To: m.to.String(), Mode: m.opts.Mode})
		m.reply <- nil
		return
	}
	a.detachLeg(ctx, l)
	from := "call:" + a.call.id
	a.publish(m.legID, EventLegMoved, MoveData{From: from, To: m.to.String(), Mode: m.opts.Mode})
	ctx.Send(m.dst, &moveIn{sig: l.sig, from: from, opts: m.opts, tap: l.tap, muted: l.muted, reply: m.reply})
	a.afterLegGone(ctx, m.legID, ErrLegMoved, "moved to "+m.to.String())
}

// detachLeg takes a leg out of this call without hanging it up: out of
// the conversation and the media topology, its leg actor stopped.
func (a *callActor) detachLeg(ctx actor.Context, l *legRef) {
	id := l.sig.ID()
	if a.conf != nil && len(a.order) > 0 && id == a.order[0] {
		a.leave(ErrLegMoved)
	}
	a.convRemove(id)
	a.rewire()
	ep := l.sig.Endpoint()
	ep.SetTaps(nil)
	ep.OnDTMF(nil)
	l.ended = true // for this call: it is gone (it lives on where it moved)
	ctx.Stop(l.pid)
}

// onMoveIn takes a leg moved here into the conversation with the caller.
func (a *callActor) onMoveIn(ctx actor.Context, m *moveIn) {
	if a.ended || a.ending || len(a.order) == 0 || a.legs[a.order[0]].ended || !a.legs[a.order[0]].answered {
		a.moveFailed(m, errors.New("the call is ending or its caller is not answered"))
		return
	}
	if a.conf != nil || (a.dial != nil && a.dial.legID == "") {
		a.moveFailed(m, errors.New("the caller is in a room or being dialled"))
		return
	}
	if a.current != nil && a.stopPlay != nil {
		a.stopPlay() // the conversation takes the caller's audio
	}
	l := a.addLeg(ctx, m.sig, true)
	l.tap, l.muted = m.tap, m.muted
	a.convAdd(a.order[0], a.convOpts[a.order[0]])
	a.convAdd(m.sig.ID(), m.opts)
	a.rewire()
	a.publish(m.sig.ID(), EventLegJoined, MoveData{From: m.from, To: "call:" + a.call.id, Mode: m.opts.Mode})
	a.log.Info("leg moved in", "leg_id", m.sig.ID(), "from", m.from, "mode", m.opts.Mode.String())
	m.reply <- nil
}

// moveFailed hangs up a leg that was let go by its old holder but cannot
// be taken here: it must not be left without an owner.
func (a *callActor) moveFailed(m *moveIn, err error) {
	a.log.Warn("move refused; hanging the leg up", "leg_id", m.sig.ID(), "error", err)
	sig := m.sig
	go func() { _ = sig.Hangup(context.Background()) }()
	m.reply <- err
}
