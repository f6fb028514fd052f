package framework

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// Rooms are conference rooms addressed by name: each is an actor that owns
// a mixer and its members, created when the first leg arrives and stopped
// when the last one leaves. A leg is in a room in one of two ways:
//
//   - joined (Call.Join): the call keeps the leg and its flow waits in
//     Join; the room only mixes the leg's audio;
//   - moved (Server.Move to ToRoom): the room holds the leg itself — its
//     hangup, digits and chat come to the room — until it is moved on or
//     hangs up.
//
// The mix runs at 16 kHz, or 48 kHz while an Opus leg is in the room, on
// its own 20 ms clock; each member hears everyone else according to its
// Mode (Monitor: heard by nobody; Whisper: heard by its Coach only).

// EventConferenceJoined and EventConferenceLeft mark a call entering and
// leaving a conference room (Data: ConferenceData).
const (
	EventConferenceJoined = "conference.joined"
	EventConferenceLeft   = "conference.left"
)

// ConferenceData is the Data of conference events.
type ConferenceData struct {
	Room         string `json:"room"`
	Participants int    `json:"participants"`
}

// RoomOptions are a room's rules, set with Server.SetRoomOptions before or
// while the room is in use.
type RoomOptions struct {
	// Tones plays a short rising beep to the room when a leg enters and a
	// falling one when it leaves.
	Tones bool
	// WaitForModerator keeps the room silent — nobody is heard — until a
	// leg with JoinOptions.Moderator is in it.
	WaitForModerator bool
	// EndWithModerator takes everyone out (moved-in legs are hung up,
	// joined calls' Join returns ErrRoomClosed) when the last moderator
	// leaves.
	EndWithModerator bool
}

// ErrKicked is returned by Join when the leg was removed from the room
// (Room.Kick); ErrRoomClosed when the room ended with its moderator.
var (
	ErrKicked     = errors.New("framework: removed from the room")
	ErrRoomClosed = errors.New("framework: the room ended")
)

// Join puts the caller into the conference room (created on first use,
// closed when the last participant leaves), where everyone hears everyone
// else through one mixer on its own 20 ms clock. It returns when the
// caller hangs up (ErrHangup), is kicked (ErrKicked), the room ends
// (ErrRoomClosed), or ctx ends (the caller is then taken out of the room
// and the flow goes on: drop-out).
func (c *Call) Join(ctx context.Context, room string, opts JoinOptions) error {
	if err := c.Answer(ctx); err != nil {
		return err
	}
	j := &joinReq{Room: room, Opts: opts}
	err := c.request(ctx, "join "+room, j)
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil {
		_, _ = c.ask(context.Background(), &leaveReq{JoinID: j.ReqID})
	}
	return err
}

// membership is the call's place in a room.
type membership struct {
	room    string
	joinID  uint64    // the joinReq's ReqID
	reply   ReplyAddr // where Join's answer goes
	pid     *actor.PID
	release func()
}

func (a *callActor) join(ctx actor.Context, j *joinReq) {
	if a.ended || len(a.order) == 0 || a.legs[a.order[0]].ended {
		replyTo(ctx, j.ReplyAddr, ErrHangup)
		return
	}
	if a.dial != nil || a.conf != nil || a.bridged() {
		replyTo(ctx, j.ReplyAddr, errors.New("the caller is already bridged or in a conference"))
		return
	}
	caller := a.legs[a.order[0]]
	pid, release := a.srv.rooms.acquire(a.srv, j.Room)
	a.conf = &membership{room: j.Room, joinID: j.ReqID, reply: j.ReplyAddr, pid: pid, release: release}
	ctx.Send(pid, &roomAttach{LegID: caller.sig.ID(), Opts: j.Opts, Holder: ctx.Self(), HeardID: a.heardID})
}

func (a *callActor) onRoomAttached(ctx actor.Context, m *roomAttached) {
	if a.conf == nil || a.conf.room != m.Room {
		return
	}
	if r := a.conf.release; r != nil {
		a.conf.release = nil
		r()
	}
	if m.Err != nil {
		reply := a.conf.reply
		a.conf = nil
		replyWith(ctx, reply, &Reply{Err: m.Err})
		return
	}
	a.publish(a.order[0], EventConferenceJoined, ConferenceData{Room: m.Room, Participants: m.Count})
	a.log.Info("joined conference", "room", m.Room, "participants", m.Count)
}

// leave takes the call out of its room; err goes to the waiting Join.
func (a *callActor) leave(ctx actor.Context, err error) {
	m := a.conf
	if m == nil {
		return
	}
	a.conf = nil
	if len(a.order) > 0 {
		ctx.Send(m.pid, &roomDetach{LegID: a.order[0]})
	}
	if m.release != nil {
		m.release()
	}
	a.publish("", EventConferenceLeft, ConferenceData{Room: m.room})
	replyTo(ctx, m.reply, err)
}

// onRoomLeft: the room let the caller go (kicked, or the room ended).
func (a *callActor) onRoomLeft(ctx actor.Context, m *roomLeft) {
	if a.conf == nil || a.conf.room != m.Room {
		return
	}
	reply := a.conf.reply
	a.conf = nil
	a.publish("", EventConferenceLeft, ConferenceData{Room: m.Room})
	replyWith(ctx, reply, &Reply{Err: m.Err})
}

// roomRegistry finds rooms by name and creates them on demand. A room
// stops when its last member leaves and nobody is on the way in.
type roomRegistry struct {
	mu    sync.Mutex
	rooms map[string]*roomEntry
	opts  map[string]RoomOptions
}

type roomEntry struct {
	pid    *actor.PID
	refs   int       // acquirers whose message may still be on the way
	stream *EventLog // the room actor's event stream
}

// acquire returns the room's actor, starting it if needed, and a release
// to call once the message sent to it has been answered.
func (r *roomRegistry) acquire(s *Server, name string) (*actor.PID, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rooms == nil {
		r.rooms = map[string]*roomEntry{}
	}
	e := r.rooms[name]
	if e == nil {
		ra := &roomActor{srv: s, name: name, opts: r.opts[name], members: map[string]*roomMember{},
			log: s.log.With("room", name), stream: NewEventLog("room:"+name, s.cfg.EventReplay)}
		props := actor.PropsFromProducer(func() actor.Actor { return &safeActor{inner: ra, log: ra.log} }, actor.WithDispatcher(s.dispatch),
			actor.WithSupervisor(actor.NewOneForOneStrategy(0, time.Second, func(any) actor.Directive { return actor.StopDirective })))
		e = &roomEntry{pid: s.root.Spawn(props), stream: ra.stream}
		r.rooms[name] = e
	}
	e.refs++
	var once sync.Once
	return e.pid, func() {
		once.Do(func() {
			r.mu.Lock()
			e.refs--
			idle := e.refs == 0
			r.mu.Unlock()
			if idle {
				s.root.Send(e.pid, &roomIdle{})
			}
		})
	}
}

// remove forgets the room if nobody is on the way in; the room then stops.
func (r *roomRegistry) remove(name string, pid *actor.PID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.rooms[name]
	if e == nil || !e.pid.Equal(pid) {
		return true
	}
	if e.refs > 0 {
		return false
	}
	delete(r.rooms, name)
	return true
}

func (r *roomRegistry) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.rooms {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (r *roomRegistry) lookup(name string) *actor.PID {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.rooms[name]; e != nil {
		return e.pid
	}
	return nil
}

func (r *roomRegistry) setOptions(name string, o RoomOptions) *actor.PID {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.opts == nil {
		r.opts = map[string]RoomOptions{}
	}
	r.opts[name] = o
	if e := r.rooms[name]; e != nil {
		return e.pid
	}
	return nil
}

// closeAll stops every room (server shutdown).
func (r *roomRegistry) closeAll(s *Server) {
	r.mu.Lock()
	var pids []*actor.PID
	for _, e := range r.rooms {
		pids = append(pids, e.pid)
	}
	r.rooms = nil
	r.mu.Unlock()
	for _, p := range pids {
		_ = s.root.StopFuture(p).Wait()
	}
}

// Room is a handle on a room by name: its methods are messages to the
// room's actor, found by name when they are sent (a room is created on
// first use and stops when empty, so the handle outlives any one actor).
type Room struct {
	srv  *Server
	name string
}

// Room returns a handle on the room with that name, open or not.
func (s *Server) Room(name string) *Room { return &Room{srv: s, name: name} }

// Name returns the room's name.
func (r *Room) Name() string { return r.name }

// Members lists who is in the room (nil if it is not open).
func (r *Room) Members(ctx context.Context) ([]LegInfo, error) { return r.srv.RoomMembers(ctx, r.name) }

// Subscribe returns a subscription to the room's event stream (legs
// joining, leaving, moving, speaking, ...), from the event after Seq from
// (0: as far back as the replay ring reaches; FromNow: only new ones), or
// nil when no room of that name is live. A room that ends and is created
// again is a new stream, numbered from 1.
func (r *Room) Subscribe(ctx context.Context, from uint64) *Subscription {
	reg := &r.srv.rooms
	reg.mu.Lock()
	e := reg.rooms[r.name]
	reg.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.stream.Subscribe(ctx, from)
}

// Kick removes a leg from the room (see Server.Kick).
func (r *Room) Kick(ctx context.Context, legID string) error { return r.srv.Kick(ctx, r.name, legID) }

// SetOptions sets the room's rules (see Server.SetRoomOptions).
func (r *Room) SetOptions(o RoomOptions) { r.srv.SetRoomOptions(r.name, o) }

// SetRoomOptions sets the rules of the named room, now and when it is
// next created.
func (s *Server) SetRoomOptions(name string, o RoomOptions) {
	if pid := s.rooms.setOptions(name, o); pid != nil {
		s.root.Send(pid, &roomOptsMsg{Opts: o})
	}
}

// RoomMembers lists who is in the named room (nil if it is not open).
func (s *Server) RoomMembers(ctx context.Context, name string) ([]LegInfo, error) {
	pid := s.rooms.lookup(name)
	if pid == nil {
		return nil, nil
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := s.ask(tctx, pid, &roomInfoReq{})
	switch {
	case err == nil:
		return r.Legs, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, nil // the room closed meanwhile
}

// Kick removes a leg from the named room: a moved-in leg is hung up, a
// joined call's Join returns ErrKicked.
func (s *Server) Kick(ctx context.Context, room, legID string) error {
	pid := s.rooms.lookup(room)
	if pid == nil {
		return ErrNoLeg
	}
	r, err := s.ask(ctx, pid, &legCtl{LegID: legID, Op: opKick})
	if err != nil {
		return err
	}
	return r.Err.Err()
}

// roomActor owns one room: its mixer and members. Nothing else touches
// them.
type roomActor struct {
	srv     *Server
	name    string
	log     *slog.Logger
	opts    RoomOptions
	mixer   *media.Mixer
	members map[string]*roomMember
	order   []string
	stream  *EventLog // the room's session events (events.go)
	stopped bool
}

type roomMember struct {
	sig    Signaling
	opts   JoinOptions
	part   *media.Participant
	stop   func()
	holder *actor.PID // the call that keeps the leg (Join); nil: the room holds it
	legPID *actor.PID // the leg's actor, when the room holds it
	heard  *heardSwitch
	tap    media.Sink
	muted  bool // Leg.Mute
	entry  *legEntry
}

func (r *roomActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *roomAttach:
		sig := r.srv.legReg.sig(m.LegID)
		if sig == nil {
			ctx.Send(m.Holder, &roomAttached{Room: r.name, Err: errData(ErrHangup)})
			return
		}
		heard, _ := r.srv.objs.get(m.HeardID).(*heardSwitch)
		r.add(sig, m.Opts, m.Holder, heard)
		ctx.Send(m.Holder, &roomAttached{Room: r.name, Count: len(r.members)})
		// A joined leg stays its call's, but the room's stream shows it come and go.
		r.publish(m.LegID, EventLegJoined, MoveData{To: "room:" + r.name, Mode: m.Opts.Mode})
	case *moveIn:
		e := r.srv.legReg.get(m.LegID)
		if e == nil {
			replyTo(ctx, m.ReplyAddr, ErrHangup) // it ended on the way
			return
		}
		sig := e.sig
		mm := r.add(sig, m.Opts, nil, nil)
		mm.legPID = spawnLegActor(ctx, r.srv, sig, true, r.log)
		mm.entry = r.srv.legReg.register(sig, ctx.Self(), "room:"+r.name)
		mm.tap, mm.muted = e.tap, m.Muted
		sig.Endpoint().SetTaps(mm.tap)
		sig.Endpoint().SetMuted(m.Muted)
		r.publish(m.LegID, EventLegJoined, MoveData{From: m.From, To: "room:" + r.name, Mode: m.Opts.Mode, FromSeq: m.FromSeq})
		replyTo(ctx, m.ReplyAddr, nil)
	case *roomDetach:
		if mm := r.members[m.LegID]; mm != nil && mm.holder != nil {
			r.remove(ctx, m.LegID)
			r.publish(m.LegID, EventLegLeft, MoveData{From: "room:" + r.name})
		}
	case *moveOut:
		mm := r.members[m.LegID]
		if mm == nil || mm.holder != nil {
			replyTo(ctx, m.ReplyAddr, errNotHere) // joined legs move through their call
			return
		}
		if m.Dst.Equal(ctx.Self()) { // already here: a change of mode
			mm.opts = m.Opts
			r.applyModes()
			r.publish(m.LegID, EventLegMoved, MoveData{From: m.To, To: m.To, Mode: m.Opts.Mode})
			replyTo(ctx, m.ReplyAddr, nil)
			return
		}
		r.remove(ctx, m.LegID)
		letLegGo(ctx, mm.entry, mm.legPID, mm.tap)
		r.publish(m.LegID, EventLegMoved, MoveData{From: "room:" + r.name, To: m.To})
		ctx.Send(m.Dst, &moveIn{LegID: m.LegID, From: "room:" + r.name, FromSeq: r.stream.Last(), Opts: m.Opts, Muted: mm.muted, ReplyAddr: m.ReplyAddr})
	case *legEnded:
		r.srv.legReg.ended(m.LegID) // only the room's own leg actors report here
		if mm := r.members[m.LegID]; mm != nil && mm.holder == nil {
			r.remove(ctx, m.LegID)
			cause := "hangup"
			if m.Cause != "" {
				cause = m.Cause
			}
			r.log.Info("leg ended in room", "leg_id", m.LegID, "cause", cause)
			r.publish(m.LegID, EventLegEnded, EndData{Cause: cause})
		}
	case *legDTMF:
		r.publish(m.LegID, EventDTMF, DTMFData{Digit: m.Digit, Source: m.Source})
	case *legChat:
		r.publish(m.LegID, EventChat, ChatData{ContentType: m.ContentType, Text: m.Text})
	case *legTransfer:
		replyTo(ctx, m.ReplyAddr, errors.New("a leg in a room cannot transfer"))
	case *legMediaUpdate:
		if mm := r.members[m.LegID]; mm != nil {
			r.rewireAll() // a codec change may change the mix rate
		}
	case *legCtl:
		r.onLegCtl(ctx, m)
	case *legReplace:
		r.onReplace(ctx, m)
	case *roomOptsMsg:
		r.opts = m.Opts
		r.applyModes()
	case *roomInfoReq:
		var out []LegInfo
		for _, id := range r.order {
			mm := r.members[id]
			out = append(out, LegInfo{ID: id, Kind: legKindOf(mm.sig.Kind()), User: mm.sig.User(), From: mm.sig.From(),
				State: LegAnswered, Muted: mm.muted || mm.opts.Muted, Mode: mm.opts.Mode})
		}
		replyWith(ctx, m.ReplyAddr, &Reply{Legs: out})
	case *roomIdle:
		r.stopIfEmpty(ctx)
	case *actor.Stopped:
		for id := range r.members {
			r.remove(ctx, id)
		}
		if r.mixer != nil {
			r.mixer.Close()
		}
	}
}

// add mixes a leg into the room.
func (r *roomActor) add(sig Signaling, opts JoinOptions, holder *actor.PID, heard *heardSwitch) *roomMember {
	id := sig.ID()
	mm := &roomMember{sig: sig, opts: opts, holder: holder, heard: heard}
	r.members[id] = mm
	r.order = append(r.order, id)
	if r.mixer == nil || r.mixer.Rate() != r.rate() {
		r.rewireAll()
	} else {
		r.wire(mm)
	}
	r.applyModes()
	if r.opts.Tones {
		r.mixer.Announce(media.Sequence(
			audio.NewTone(audio.Tone{Freqs: []float64{600}, Duration: 100 * time.Millisecond, Amplitude: 4000}),
			audio.NewTone(audio.Tone{Freqs: []float64{900}, Duration: 100 * time.Millisecond, Amplitude: 4000})))
	}
	r.log.Info("leg entered room", "leg_id", id, "mode", opts.Mode.String(), "members", len(r.members))
	return mm
}

// wire connects a member's endpoint to the mixer.
func (r *roomActor) wire(mm *roomMember) {
	mm.part = r.mixer.Add()
	ep := mm.sig.Endpoint()
	var src media.Source = mm.part
	if mm.heard != nil {
		src = &heardSource{src: mm.part, sw: mm.heard}
	}
	ep.SetSink(mm.part)
	mm.stop = ep.Play(src, nil)
}

func (r *roomActor) unwire(mm *roomMember) {
	if mm.part == nil {
		return
	}
	r.mixer.Remove(mm.part)
	mm.stop()
	mm.sig.Endpoint().ClearSink(mm.part)
	mm.part = nil
}

// rate is the room's mix rate (mixRate over its members).
func (r *roomActor) rate() int {
	eps := make([]*media.Endpoint, 0, len(r.members))
	for _, mm := range r.members {
		eps = append(eps, mm.sig.Endpoint())
	}
	return mixRate(eps)
}

// rewireAll rebuilds the mix (at a new rate) with every member.
func (r *roomActor) rewireAll() {
	old := r.mixer
	if old != nil {
		for _, mm := range r.members {
			if mm.part != nil {
				r.unwire(mm)
			}
		}
	}
	r.mixer = media.NewMixer(r.rate())
	if old != nil {
		old.Close()
	}
	for _, id := range r.order {
		r.wire(r.members[id])
	}
	r.applyModes()
}

// applyModes sets who is heard by whom: mute, Monitor, Whisper, and the
// waiting-for-moderator rule.
func (r *roomActor) applyModes() {
	moderated := !r.opts.WaitForModerator
	for _, mm := range r.members {
		if mm.opts.Moderator {
			moderated = true
		}
	}
	for _, mm := range r.members {
		if mm.part == nil {
			continue
		}
		mm.part.SetMuted(mm.opts.Muted || mm.opts.Mode == ModeMonitor || (!moderated && !mm.opts.Moderator))
		var audience *media.Participant
		if mm.opts.Mode == ModeWhisper {
			if c := r.members[mm.opts.Coach]; c != nil {
				audience = c.part
			} else {
				mm.part.SetMuted(true)
			}
		}
		mm.part.SetAudience(audience)
	}
}

// remove takes a member out of the room.
func (r *roomActor) remove(ctx actor.Context, id string) {
	mm := r.members[id]
	if mm == nil {
		return
	}
	r.unwire(mm)
	delete(r.members, id)
	r.order = slices.DeleteFunc(r.order, func(s string) bool { return s == id })
	wasModerator := mm.opts.Moderator
	r.applyModes()
	if r.opts.Tones && len(r.members) > 0 {
		r.mixer.Announce(media.Sequence(
			audio.NewTone(audio.Tone{Freqs: []float64{900}, Duration: 100 * time.Millisecond, Amplitude: 4000}),
			audio.NewTone(audio.Tone{Freqs: []float64{600}, Duration: 100 * time.Millisecond, Amplitude: 4000})))
	}
	r.log.Info("leg left room", "leg_id", id, "members", len(r.members))
	if wasModerator && r.opts.EndWithModerator {
		for _, m := range r.members {
			if m.opts.Moderator {
				wasModerator = false
			}
		}
		if wasModerator {
			r.endRoom(ctx)
		}
	}
	r.stopIfEmpty(ctx)
}

// endRoom takes everyone out: the last moderator left.
func (r *roomActor) endRoom(ctx actor.Context) {
	for _, id := range slices.Clone(r.order) {
		mm := r.members[id]
		r.unwire(mm)
		delete(r.members, id)
		if mm.holder != nil {
			ctx.Send(mm.holder, &roomLeft{Room: r.name, Err: errData(ErrRoomClosed)})
		} else {
			sig := mm.sig
			go func() { _ = sig.Hangup(context.Background()) }()
		}
	}
	r.order = nil
}

func (r *roomActor) stopIfEmpty(ctx actor.Context) {
	if len(r.members) > 0 || r.stopped {
		return
	}
	// Legs the room held and that are still hanging up keep it until
	// their leg actors report; the registry decides whether anyone is on
	// the way in.
	if r.srv.rooms.remove(r.name, ctx.Self()) {
		r.stopped = true
		ctx.Stop(ctx.Self())
	}
}

func (r *roomActor) onLegCtl(ctx actor.Context, m *legCtl) {
	sink, _ := r.srv.objs.take(m.SinkID).(media.Sink)
	mm := r.members[m.LegID]
	if mm == nil {
		replyTo(ctx, m.ReplyAddr, errNotHere)
		return
	}
	root, reply := ctx.ActorSystem().Root, m.ReplyAddr
	switch m.Op {
	case opMute, opUnmute:
		mm.muted = m.Op == opMute
		mm.sig.Endpoint().SetMuted(mm.muted)
		typ := EventLegMuted
		if !mm.muted {
			typ = EventLegUnmuted
		}
		r.publish(m.LegID, typ, nil)
		replyTo(ctx, reply, nil)
	case opKick:
		r.remove(ctx, m.LegID)
		if mm.holder != nil {
			ctx.Send(mm.holder, &roomLeft{Room: r.name, Err: errData(ErrKicked)})
		} else {
			sig := mm.sig
			go func() { _ = sig.Hangup(context.Background()) }()
		}
		replyTo(ctx, reply, nil)
	case opHangup:
		if mm.holder != nil {
			replyTo(ctx, reply, errNotHere)
			return
		}
		sig := mm.sig
		go func() { replyTo(root, reply, sig.Hangup(context.Background())) }()
	case opTaps:
		mm.tap = sink
		mm.sig.Endpoint().SetTaps(sink)
		replyTo(ctx, reply, nil)
	case opHold, opUnhold:
		h, ok := mm.sig.(holdable)
		if !ok {
			replyTo(ctx, reply, errors.New("this leg cannot be held"))
			return
		}
		on := m.Op == opHold
		go func() {
			if on {
				replyTo(root, reply, h.Hold(context.Background()))
			} else {
				replyTo(root, reply, h.Unhold(context.Background()))
			}
		}()
	default:
		replyTo(ctx, reply, errors.New("not supported for a leg in a room"))
	}
}

// onReplace puts a new leg in the place of a member the room holds.
func (r *roomActor) onReplace(ctx actor.Context, m *legReplace) {
	sig := r.srv.legReg.sig(m.LegID)
	old := r.members[m.Old]
	if old == nil || old.holder != nil || sig == nil {
		r.srv.dropLeg(m.LegID)
		replyTo(ctx, m.ReplyAddr, errNotHere)
		return
	}
	mm := r.add(sig, old.opts, nil, nil)
	mm.legPID = spawnLegActor(ctx, r.srv, sig, true, r.log)
	mm.entry = r.srv.legReg.register(sig, ctx.Self(), "room:"+r.name)
	r.remove(ctx, m.Old)
	oldSig := old.sig
	go func() { _ = oldSig.Hangup(context.Background()) }()
	r.publish(m.LegID, EventLegJoined, MoveData{From: m.From, To: "room:" + r.name})
	replyTo(ctx, m.ReplyAddr, nil)
}

// publish puts an event on the room's stream and the server-wide one.
func (r *roomActor) publish(legID string, typ EventType, data any) {
	r.srv.publishTo(r.stream, Event{CallID: "room:" + r.name, LegID: legID, Type: typ, Data: data})
}
