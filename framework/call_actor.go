package framework

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

type legRef struct {
	pid      *actor.PID
	sig      Signaling
	entry    *legEntry
	answered bool
	ended    bool // gone from this call: hung up, or moved away
	muted    bool // Leg.Mute
	held     bool // the far end put us on hold (its direction)
	// releasing marks a transferor whose REFER is being reported: the
	// call does not hang it up before its final NOTIFY.
	releasing bool
	tap       media.Sink // Leg.Tap
	// transferred marks a leg released after a transfer: its end is not
	// the call's cause.
	transferred bool
}

// callActor owns all state of one call. Nothing else mutates it.
type callActor struct {
	srv     *Server
	call    *Call
	initial Signaling
	cancel  context.CancelCauseFunc
	log     *slog.Logger

	legs  map[string]*legRef
	order []string // leg ids in join order; the first is the caller
	// conv is the conversation (topology.go): the legs that talk to each
	// other, wired as topo.
	conv     []string
	convOpts map[string]JoinOptions
	topo     topology
	ending   bool
	ended    bool
	cause    string

	current   *playing // playback on the caller's endpoint
	stopPlay  func()
	waitReply []ReplyAddr // hangup requests waiting for the legs to go
	// heardID is a.heard in the server's objects table, for the rooms the
	// caller joins.
	heardID string
	// chats are SendMessage requests waiting for their legs' answers,
	// by the ReqID each leg was asked with; nextReq numbers those asks.
	chats     map[uint64]chatPart
	nextReq   uint64
	dial      *dialState
	echoStop  func() // Call.Echo's reflection
	conf      *membership
	listen    media.Sink // Listen's (Record's) sink on the caller
	taps      tapSet     // further sinks on what the caller says
	heardTaps tapSet     // sinks on what the caller hears
	heard     heardSwitch

	start, answer time.Time
}

func (a *callActor) Receive(ctx actor.Context) {
	if a.onSessionMessage(ctx, ctx.Message()) {
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.heardID = a.srv.objs.put(&a.heard)
		a.publish("", EventCallStarted, nil)
		a.addLeg(ctx, a.initial, !a.initial.Inbound())
	case *legAnswered:
		a.onLegAnswered(m.LegID, m.At)
	case *dialReq:
		if a.conf != nil {
			replyTo(ctx, m.ReplyAddr, errors.New("the caller is in a conference"))
			return
		}
		a.startDial(ctx, m)
	case *joinReq:
		a.join(ctx, m)
	case *leaveReq:
		if a.conf != nil && a.conf.joinID == m.JoinID {
			a.leave(ctx, context.Canceled)
		}
		replyTo(ctx, m.ReplyAddr, nil)
	case *dialResult:
		a.onDialResult(ctx, m)
	case *dialCancel:
		if a.dial != nil && a.dial.id == m.DialID {
			a.endDial(ctx, context.Canceled, true)
		}
	case *legDTMF:
		a.publish(m.LegID, EventDTMF, DTMFData{Digit: m.Digit, Source: m.Source})
	case *legEnded:
		a.onLegEnded(ctx, m)
	case *legCtl:
		a.onLegCtl(ctx, m)
	case *legsReq:
		a.onLegsReq(ctx, m)
	case *moveOut:
		a.onMoveOut(ctx, m)
	case *moveIn:
		a.onMoveIn(ctx, m)
	case *legMediaUpdate:
		a.onMediaUpdate(m)
	case *legReplace:
		a.onReplace(ctx, m)
	case *roomAttached:
		a.onRoomAttached(ctx, m)
	case *roomLeft:
		a.onRoomLeft(ctx, m)
	case *legTransfer:
		a.onLegTransfer(ctx, m)
	case *transferResult:
		a.onTransferResult(ctx, m)
	case *transferReq:
		a.startTransfer(ctx, m)
	case *holdReq:
		a.hold(ctx, m)
	case *echoReq:
		a.echo(ctx, m)
	case *answerReq:
		a.withFirstLeg(ctx, m.ReplyAddr, func(l *legRef) { ctx.Send(l.pid, &legAnswer{ReplyAddr: m.ReplyAddr}) })
	case *rejectReq:
		a.withFirstLeg(ctx, m.ReplyAddr, func(l *legRef) {
			if l.answered {
				replyTo(ctx, m.ReplyAddr, ErrNotAnswered)
				return
			}
			a.cause = fmt.Sprintf("rejected %d", m.Code)
			ctx.Send(l.pid, &legReject{Code: m.Code, ReplyAddr: m.ReplyAddr})
		})
	case *hangupReq:
		if a.ended {
			replyTo(ctx, m.ReplyAddr, nil)
			return
		}
		a.waitReply = append(a.waitReply, m.ReplyAddr)
		a.hangupAll(ctx, "hangup by application")
	case *playReq:
		a.play(ctx, m)
	case *callerReq:
		a.onCallerReq(ctx, m)
	case *listenReq:
		sink, _ := a.srv.objs.take(m.SinkID).(media.Sink)
		a.withFirstLeg(ctx, m.ReplyAddr, func(l *legRef) {
			a.listen = sink
			a.applyTaps()
			replyTo(ctx, m.ReplyAddr, nil)
		})
	case *tapReq:
		a.onTapReq(ctx, m)
	case *speechChange:
		a.onSpeechChange(m)
	case *stopPlayReq:
		if a.current != nil && a.current.id == m.PlayID && a.stopPlay != nil {
			a.stopPlay()
		}
	case *playDone:
		a.onPlayDone(ctx, m)
	case *Reply:
		a.onChatReply(ctx, m)
	case *controllerDone:
		if m.Err != "" {
			a.log.Warn("call flow returned an error", "error", m.Err)
		}
		if !a.ended {
			cause := "call flow finished"
			if m.Panicked {
				cause = "panic in call flow"
				if !a.ending {
					a.cause = cause
				}
			}
			a.hangupAll(ctx, cause)
		}
	case *shutdownReq:
		a.hangupAll(ctx, "server shutdown")
	case *actor.Stopped:
		// Reached on normal end and when a panic stopped the actor: make sure
		// nothing outlives the call.
		if !a.ended {
			a.log.Error("call actor stopped unexpectedly; tearing the call down")
			for _, l := range a.legs {
				go func(sig Signaling) { _ = sig.Hangup(context.Background()) }(l.sig)
			}
			a.finish(ctx, "internal error")
		}
	}
}

// addLeg makes sig one of the call's legs, under a leg actor of its own.
// Outbound and moved-in legs arrive answered.
func (a *callActor) addLeg(ctx actor.Context, sig Signaling, answered bool) *legRef {
	l := &legRef{pid: spawnLegActor(ctx, a.srv, sig, answered, a.log), sig: sig}
	l.entry = a.srv.legReg.register(sig, ctx.Self(), "call:"+a.call.id)
	a.legs[sig.ID()] = l
	a.order = append(a.order, sig.ID())
	if answered {
		a.onLegAnswered(sig.ID(), time.Time{})
	}
	return l
}

// spawnLegActor starts the leg actor of sig as a child of the current
// actor (a call or a room), which then receives the leg's events.
func spawnLegActor(ctx actor.Context, srv *Server, sig Signaling, answered bool, log *slog.Logger) *actor.PID {
	log = log.With("leg_id", sig.ID())
	props := actor.PropsFromProducer(func() actor.Actor {
		return &safeActor{inner: &legActor{srv: srv, sig: sig, answered: answered}, log: log}
	}, actor.WithDispatcher(srv.dispatch))
	e := srv.legReg.add(sig)
	pid := ctx.Spawn(props)
	// Now, not in the actor's Started: from here on what the leg reports
	// queues in this actor's mailbox, behind Started.
	root := ctx.ActorSystem().Root
	if e.attach(root, pid) {
		listenLeg(srv, e, root)
	}
	return pid
}

func (a *callActor) onLegAnswered(legID string, at time.Time) {
	if l := a.legs[legID]; l != nil && !l.answered {
		l.answered = true
		l.entry.state.Store(uint32(LegAnswered))
		if at.IsZero() {
			at = time.Now()
		}
		if a.answer.IsZero() {
			a.answer = at
		}
		a.publish(legID, EventLegAnswered, nil)
	}
}

func (a *callActor) withFirstLeg(ctx actor.Context, reply ReplyAddr, fn func(l *legRef)) {
	if a.ended || len(a.order) == 0 {
		replyTo(ctx, reply, ErrHangup)
		return
	}
	l := a.legs[a.order[0]]
	if l.ended {
		replyTo(ctx, reply, ErrHangup)
		return
	}
	fn(l)
}

// playing is the playback on the caller: the request's ID and where its
// answer goes when it ends.
type playing struct {
	id    uint64
	reply ReplyAddr
}

func (a *callActor) play(ctx actor.Context, p *playReq) {
	src, _ := a.srv.objs.take(p.SourceID).(media.Source)
	if a.ended || len(a.order) == 0 {
		replyTo(ctx, p.ReplyAddr, ErrHangup)
		return
	}
	l := a.legs[a.order[0]]
	if l.ended {
		replyTo(ctx, p.ReplyAddr, ErrHangup)
		return
	}
	if src == nil {
		// The requester gave up before the request arrived.
		replyTo(ctx, p.ReplyAddr, context.Canceled)
		return
	}
	if a.bridged() || a.conf != nil {
		// The caller's outbound audio belongs to the bridge or the
		// conference until Dial or Join returns.
		replyTo(ctx, p.ReplyAddr, ErrBridged)
		return
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	cur := &playing{id: p.ReqID, reply: p.ReplyAddr}
	a.current = cur
	a.publish(l.sig.ID(), EventPlayStarted, nil)
	a.stopPlay = l.sig.Endpoint().Play(&heardSource{src: src, sw: &a.heard}, func(err error) {
		m := &playDone{PlayID: cur.id, Err: errData(err), ReplyAddr: cur.reply}
		var pe *media.PanicError
		if errors.As(err, &pe) {
			pd := panicData(pe)
			m.Panic = &pd
		}
		root.Send(self, m)
	})
}

// onPlayDone answers the Play whose playback ended.
func (a *callActor) onPlayDone(ctx actor.Context, m *playDone) {
	if a.current != nil && a.current.id == m.PlayID {
		a.current, a.stopPlay = nil, nil
	}
	a.publish("", EventPlayFinished, nil)
	if m.Panic != nil && len(a.order) > 0 {
		// Before the flow hears of it, so the cause is the panic.
		a.onLegPanic(ctx, &legPanic{LegID: a.order[0], Panic: *m.Panic})
	}
	err := m.Err.Err()
	switch {
	case a.ended:
		err = ErrHangup
	case errors.Is(err, media.ErrInterrupted):
		err = context.Canceled
	case errors.Is(err, media.ErrClosed):
		err = ErrHangup
	}
	replyTo(ctx, m.ReplyAddr, err)
}

func (a *callActor) hangupAll(ctx actor.Context, cause string) {
	if a.ending {
		return
	}
	a.ending = true
	live := 0
	for _, l := range a.legs {
		if l.ended || isClosed(l.sig.Done()) || l.sig.Err() != nil {
			// Gone already, or going (Err is set first, before the leg
			// closes its media, which may be what ended the flow): its
			// legEnded message is on the way and carries the real cause.
			continue
		}
		live++
		if l.releasing {
			continue // an attended transferor: hung up after its final NOTIFY
		}
		ctx.Send(l.pid, &legHangup{})
	}
	if live > 0 && a.cause == "" {
		a.cause = cause
	}
	if live == 0 && len(a.legs) == 0 {
		a.end(ctx)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (a *callActor) onLegEnded(ctx actor.Context, m *legEnded) {
	l := a.legs[m.LegID]
	if l == nil || l.ended {
		return
	}
	l.ended = true
	a.srv.legReg.ended(m.LegID)
	cause := "hangup"
	if m.Cause != "" {
		cause = m.Cause
	}
	if a.cause == "" && !l.transferred {
		a.cause = cause
	}
	a.publish(m.LegID, EventLegEnded, EndData{Cause: cause})
	a.afterLegGone(ctx, m.LegID, nil, cause)
}

// afterLegGone updates the call after a leg hung up or moved away:
// Dial learns its party left (dialErr), the conversation is rewired, and
// when the caller left everyone goes; with no leg left the call ends.
func (a *callActor) afterLegGone(ctx actor.Context, legID string, dialErr error, cause string) {
	if a.cause == "" && len(a.order) > 0 && legID == a.order[0] {
		a.cause = cause
	}
	if a.dial != nil && a.dial.legID == legID {
		a.endDial(ctx, dialErr, false) // the dialled party left; the caller stays
	}
	if slices.Contains(a.conv, legID) {
		a.convRemove(legID)
		a.rewire()
	}
	if len(a.order) > 0 && legID == a.order[0] {
		// The caller owns the call: when it goes, everyone goes.
		if a.dial != nil {
			a.endDial(ctx, ErrHangup, false)
		}
		if a.cause == "" {
			a.cause = cause
		}
		a.hangupAll(ctx, cause)
	}
	for _, l := range a.legs {
		if !l.ended {
			return
		}
	}
	if a.cause == "" {
		a.cause = cause
	}
	a.end(ctx)
}

func causeString(err error) string {
	switch {
	case errors.Is(err, sip.ErrRemoteHangup):
		return "remote hangup"
	case errors.Is(err, sip.ErrCanceled):
		return "canceled"
	case errors.Is(err, sip.ErrMediaTimeout):
		return "media timeout"
	case errors.Is(err, sip.ErrSessionExpired):
		return "session expired"
	case errors.Is(err, sip.ErrLocalHangup):
		return "local hangup"
	case errors.Is(err, sip.ErrNoAck):
		return "no ack"
	}
	return err.Error()
}

// end runs once every leg is gone: the flow's ctx is cancelled, pending
// requests fail with ErrHangup, the CDR is written and the actor stops.
func (a *callActor) end(ctx actor.Context) {
	if a.ended {
		return
	}
	a.finish(ctx, a.cause)
	for _, r := range a.waitReply {
		replyTo(ctx, r, nil)
	}
	a.waitReply = nil
	ctx.Stop(ctx.Self())
}

func (a *callActor) finish(ctx actor.Context, cause string) {
	a.leave(ctx, ErrHangup)
	a.ended = true
	a.srv.objs.drop(a.heardID)
	if a.dial != nil {
		st := a.dial
		a.dial = nil
		st.cancel()
		replyTo(ctx, st.reply, ErrHangup)
	}
	a.cancel(ErrHangup)
	a.publish("", EventCallEnded, EndData{Cause: cause})
	a.call.stream.Close()
	end := time.Now()
	cdr := CDR{CallID: a.call.id, From: a.call.from, To: a.call.to, User: a.call.user,
		Start: a.start, Answer: a.answer, End: end, Cause: cause}
	if !a.answer.IsZero() {
		cdr.Duration = end.Sub(a.answer)
	}
	a.teardown()
	for _, l := range a.legs {
		if !l.ended {
			a.srv.legReg.ended(l.sig.ID())
		}
	}
	if len(a.order) > 0 {
		st := a.legs[a.order[0]].sig.Endpoint().Stats()
		cdr.Media = MediaStats{PacketsIn: st.PacketsIn, PacketsOut: st.PacketsOut, Lost: st.Lost, Jitter: st.Jitter,
			RTT: st.RTT, RTTSamples: st.RTTSamples, RemoteLost: st.RemoteLost, RemoteJitter: st.RemoteJitter, MOS: round2(st.MOS), RemoteMOS: round2(st.RemoteMOS)}
	}
	a.srv.callEnded(a.call, cdr)
}
