package framework

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/sip"
)

// Outcomes of a Dial that did not connect; they wrap the SIP status (see
// sip.StatusError).
var (
	ErrBusy     = sip.ErrBusy
	ErrDeclined = sip.ErrDeclined
	ErrNotFound = sip.ErrNotFound
	ErrNoAnswer = sip.ErrNoAnswer
	ErrRejected = sip.ErrRejected
)

// DialOptions configure Dial. The zero value rings for 30 s and presents
// the caller's own identity.
type DialOptions struct {
	// Timeout is how long the far end may ring (default 30 s).
	Timeout time.Duration
	// CallerID is the identity the dialled phone shows (From display name
	// and user; a P-Asserted-Identity toward trusted trunks). Zero passes
	// the caller's on (Call.Caller, like Asterisk's caller id
	// passthrough), except that a trunk's caller_id replaces the caller's
	// number; Server.Originate, which has no caller, presents
	// "switchboard". A CallerID with only Private set keeps the caller's
	// identity but hides it from untrusted peers.
	CallerID CallerID
	// Ringback is the country whose ringing tone an answered caller hears
	// while the far end rings ("us", "gb", "de", "fr", "jp", ...; see
	// Ringback). Empty means Config.Ringback.
	Ringback string
	// Username and Password answer the far end's digest challenge (trunks).
	Username, Password string
	// Headers are added to the outgoing INVITE.
	Headers map[string]string
	// Trunk, if set, sends the call through the named trunk (target is
	// then a phone number) with the trunk's credentials and caller id.
	Trunk string
}

// Dial calls target (a SIP URI or user@host), and when it answers, bridges
// it with the caller: passthrough when both legs use the same codec,
// transcoding otherwise. While it rings the caller hears ringing — a 180 if
// the call is not answered yet (it is answered when the far end answers),
// else a ringback tone.
//
// Dial returns nil when the dialled party hangs up (the caller is still on
// the call and the flow goes on), ErrHangup when the caller hangs up, a
// typed error (ErrBusy, ErrNoAnswer, ...) when the far end did not answer,
// or ctx's error when ctx ends first (the dialled leg is then hung up).
func (c *Call) Dial(ctx context.Context, target string, opts DialOptions) error {
	d := &dialReq{Target: target, Opts: opts}
	err := c.request(ctx, "dial "+target, d)
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil {
		c.root.Send(c.pid, &dialCancel{DialID: d.ReqID})
	}
	return err
}

// dialState is the one dial (or bridge) a call has under way.
type dialState struct {
	id       uint64      // the dialReq's ReqID
	reply    ReplyAddr   // where Dial's answer goes
	opts     DialOptions // as resolved by startDial: caller id filled in
	cancel   context.CancelFunc
	ringback func()
	legID    string // set once answered; the leg is then in the conversation
	// transferring is set while the bridged party's REFER target rings.
	transferring bool
}

func (a *callActor) startDial(ctx actor.Context, d *dialReq) {
	if a.ended || len(a.order) == 0 || a.legs[a.order[0]].ended {
		replyTo(ctx, d.ReplyAddr, ErrHangup)
		return
	}
	if a.dial != nil {
		replyTo(ctx, d.ReplyAddr, errors.New("a dial is already under way on this call"))
		return
	}
	caller := a.legs[a.order[0]]
	opts := d.Opts
	country := opts.Ringback
	if country == "" {
		country = a.srv.cfg.Ringback
	}
	ringback, err := Ringback(country)
	if err != nil {
		replyTo(ctx, d.ReplyAddr, err)
		return
	}
	opts.CallerID = presentedCallerID(opts, a.call.caller)
	dctx, cancel := context.WithCancel(context.Background())
	st := &dialState{id: d.ReqID, reply: d.ReplyAddr, opts: opts, cancel: cancel}
	a.dial = st
	if caller.answered {
		st.ringback = caller.sig.Endpoint().Play(ringback, nil)
	} else if err := caller.sig.Ringing(); err != nil {
		a.log.Debug("dial: 180 to caller failed", "error", err)
	}
	self, root, srv := ctx.Self(), ctx.ActorSystem().Root, a.srv
	callerSig, callerAnswered := caller.sig, caller.answered
	a.log.Info("dialing", "target", d.Target)
	target, id := d.Target, d.ReqID
	go func() {
		leg, err := srv.dialLeg(dctx, target, opts)
		answered := false
		if err == nil && !callerAnswered {
			// The caller is answered only once the far end has answered.
			if aerr := callerSig.Answer(dctx); aerr != nil {
				_ = leg.Hangup(context.Background())
				err = aerr
			} else {
				answered = true
			}
		}
		m := &dialResult{DialID: id, CallerAnswered: answered, Err: errData(sipCause(err))}
		if err == nil {
			m.LegID = srv.legReg.add(leg).id // the leg travels by ID
		}
		root.Send(self, m)
	}()
}

// dropLeg hangs up a leg handed to this actor that it cannot take, and
// forgets it.
func (s *Server) dropLeg(id string) {
	sig := s.legReg.sig(id)
	if sig == nil {
		return
	}
	s.legReg.ended(id) // no actor watches it any more
	go func() { _ = sig.Hangup(context.Background()) }()
}

func (a *callActor) onDialResult(ctx actor.Context, m *dialResult) {
	st := a.dial
	if st == nil || st.id != m.DialID {
		a.srv.dropLeg(m.LegID)
		return
	}
	if st.ringback != nil {
		st.ringback()
		st.ringback = nil
	}
	leg := a.srv.legReg.sig(m.LegID)
	if m.Err != nil || leg == nil {
		a.dial = nil
		st.cancel()
		err := m.Err.Err()
		switch {
		case a.ended:
			err = ErrHangup
		case err == nil:
			err = ErrHangup // the answered leg ended on its way here
		}
		replyTo(ctx, st.reply, err)
		return
	}
	if m.CallerAnswered {
		caller := a.legs[a.order[0]]
		ctx.Send(caller.pid, &legMarkAnswered{})
		a.onLegAnswered(caller.sig.ID(), time.Time{})
	}
	if a.ended || a.ending {
		a.dial = nil
		st.cancel()
		a.srv.dropLeg(m.LegID)
		replyTo(ctx, st.reply, ErrHangup)
		return
	}
	a.addLeg(ctx, leg, true) // answered: addLeg publishes leg.answered
	// A playback on the caller (the flow may play from another goroutine)
	// gives way to the bridge.
	caller := a.bridgeDialled(st, leg)
	a.log.Info("dial: answered and bridged", "leg_id", leg.ID(), "codec_a", caller.Endpoint().Config().Codec.Name,
		"codec_b", leg.Endpoint().Config().Codec.Name)
}

// bridgeDialled makes leg (already added) the dial's party and puts it in
// the conversation with the caller, whose signaling it returns.
func (a *callActor) bridgeDialled(st *dialState, leg Signaling) Signaling {
	caller := a.legs[a.order[0]]
	st.legID = leg.ID()
	a.convAdd(caller.sig.ID(), a.convOpts[caller.sig.ID()])
	a.convAdd(leg.ID(), JoinOptions{})
	a.rewire()
	a.publish(leg.ID(), EventLegBridged, nil)
	return caller.sig
}

// endDial finishes the dial when its leg ends or is cancelled; err goes to
// the waiting Dial.
func (a *callActor) endDial(ctx actor.Context, err error, hangupLeg bool) {
	st := a.dial
	if st == nil {
		return
	}
	a.dial = nil
	st.cancel()
	if st.ringback != nil {
		st.ringback()
	}
	if st.legID != "" && slices.Contains(a.conv, st.legID) {
		a.convRemove(st.legID)
		a.rewire()
	}
	if hangupLeg && st.legID != "" {
		if l := a.legs[st.legID]; l != nil && !l.ended {
			ctx.Send(l.pid, &legHangup{})
		}
	}
	replyTo(ctx, st.reply, err)
}

// Dialer originates legs of one transport family — the way SIP dials
// phones and trunks, a browser bridge rings logged-in browsers. Dial,
// Originate and transfers fork a target to every dialer added
// (Server.AddDialer) and to SIP at once: the first leg to answer wins,
// the others stop ringing.
type Dialer interface {
	// Dial reaches target and returns its leg once answered. An error
	// that wraps ErrNotFound means target is not this dialer's to reach.
	Dial(ctx context.Context, target string, opts DialOptions) (Signaling, error)
}

// AddDialer adds a transport family that Dial can reach, forked with SIP.
func (s *Server) AddDialer(d Dialer) {
	s.mu.Lock()
	s.dialers = append(s.dialers, d)
	s.mu.Unlock()
}

// dialLeg forks target to every dialer and SIP; the first answer wins, a
// later one is hung up. Without an answer the most telling error is
// returned: any but "not found" (a busy phone beats an offline browser).
func (s *Server) dialLeg(ctx context.Context, target string, opts DialOptions) (Signaling, error) {
	s.mu.Lock()
	dialers := slices.Clone(s.dialers)
	s.mu.Unlock()
	if len(dialers) == 0 {
		leg, err := sipDial(ctx, s.agent, target, opts)
		if err != nil {
			return nil, err // no typed nil in the interface
		}
		return leg, nil
	}
	type result struct {
		leg Signaling
		err error
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(dialers)+1)
	for _, d := range dialers {
		go func() {
			leg, err := d.Dial(fctx, target, opts)
			results <- result{leg, err}
		}()
	}
	go func() {
		leg, err := sipDial(fctx, s.agent, target, opts)
		if err != nil {
			results <- result{nil, err}
			return
		}
		results <- result{leg, nil}
	}()
	var winner Signaling
	var errs []error
	for range len(dialers) + 1 {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case winner == nil:
			winner = r.leg
			cancel() // the rest stop ringing
		default:
			go func() { _ = r.leg.Hangup(context.Background()) }() // answered too late
		}
	}
	if winner != nil {
		return winner, nil
	}
	for _, err := range errs {
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
	}
	return nil, errs[0]
}

// sipCause shortens an error of the sip package for a verb's error: its
// SIP status ("486 Busy Here", which still matches ErrBusy) or "user not
// registered" says it all once the verb names the target.
func sipCause(err error) error {
	var se *sip.StatusError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, sip.ErrNotRegistered):
		return sip.ErrNotRegistered
	}
	return err
}

// presentedCallerID is the identity a Dial shows: the flow's, else the
// caller's passed on (a trunk's caller_id standing in for the number).
func presentedCallerID(opts DialOptions, caller CallerID) CallerID {
	id := opts.CallerID
	if id.Name == "" && id.Number == "" {
		private := id.Private
		id = caller
		id.Private = id.Private || private
		if opts.Trunk != "" {
			id.Number = "" // the carrier wants its own caller_id
		}
	}
	id.URI = ""
	return id
}

func sipDial(ctx context.Context, agent *sip.Agent, target string, opts DialOptions) (*sip.Leg, error) {
	so := sip.DialOptions{Timeout: opts.Timeout, FromUser: opts.CallerID.Number, FromName: opts.CallerID.Name,
		Private: opts.CallerID.Private, Username: opts.Username, Password: opts.Password, Headers: opts.Headers}
	if opts.Trunk != "" {
		return agent.DialTrunk(ctx, opts.Trunk, target, so)
	}
	return agent.Dial(ctx, target, so)
}
