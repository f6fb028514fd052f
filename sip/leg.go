package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/presence"
)

// Errors that end a leg. Check them with errors.Is.
var (
	// ErrRemoteHangup: the peer sent BYE.
	ErrRemoteHangup = errors.New("sip: remote hangup")
	// ErrCanceled: the caller sent CANCEL before the call was answered.
	ErrCanceled = errors.New("sip: call canceled by caller")
	// ErrMediaTimeout: no RTP arrived for the configured media timeout.
	ErrMediaTimeout = errors.New("sip: media timeout")
	// ErrLocalHangup: this side hung up.
	ErrLocalHangup = errors.New("sip: local hangup")
	// ErrShutdown: the agent is shutting down.
	ErrShutdown = errors.New("sip: agent shutting down")
	// ErrNoAck: the caller never acknowledged our 200 (Config.AckTimeout).
	ErrNoAck = errors.New("sip: no ACK for our 2xx")
)

// LegState is where a leg is in its life.
type LegState int

// Leg states.
const (
	LegEarly    LegState = iota // INVITE received or sent, no final answer yet
	LegAnswered                 // 2xx sent/received and ACKed
	LegEnded                    // BYE, CANCEL, rejection or failure
)

// Leg is one SIP INVITE dialog with its RTP endpoint. Methods are safe for
// concurrent use. A Leg reports its end through Done and Err.
type Leg struct {
	agent    *Agent
	log      *slog.Logger
	inbound  bool
	callID   string
	from, to string
	user     string // request-URI user (inbound) or target (outbound)
	trunk    string // the trunk the call came in on or goes out through
	authUser string // directory user the INVITE authenticated as
	remote   Identity
	ip       netip.Addr

	uas      *sipgo.DialogServerSession
	inviteTx sip.ServerTransaction // inbound: the INVITE's transaction
	// sent2xxAt is when a 2xx went to inviteTx (unix ns; 0: none yet),
	// which is then in RFC 6026's Accepted state. Inbound only.
	sent2xxAt atomic.Int64
	byeTaken  atomic.Bool // the peer's BYE was taken in the read loop (bye_fast.go)
	// answeredAt is when the call was answered (unix ns; 0 before):
	// inbound, when our 2xx's ACK came (sent2xxAt if a BYE came first);
	// outbound, when the 2xx came. See AnsweredAt.
	answeredAt atomic.Int64
	invited    time.Time    // inbound: when the INVITE arrived (setup latency)
	web        *WebRTCMedia // a WebRTC offer's media (a browser SIP client), else nil
	uac        *sipgo.DialogClientSession
	offer      *MediaOffer
	ep         *media.Endpoint
	release    func() // inbound: gives the call's slot back to CallLimits
	// unpend, inbound, stops the INVITE counting as pending
	// (OverloadOptions.MaxPendingInvites; admitInvite's release, which
	// onInvite calls again when the transaction is over).
	unpend func()

	mu        sync.Mutex
	respMu    sync.Mutex // serialises responses to the INVITE (sipgo's dialog is not safe for concurrent ones)
	onEnd     []func()   // OnEnd callbacks, run once when the leg ends
	endFired  bool       // the OnEnd callbacks have run
	state     LegState
	answering bool
	err       error
	done      chan struct{}
	final     chan struct{} // inbound: closed when the final response is out (and ACKed)
	finalOnce sync.Once
	regID     string

	// An offer we sent in a 2xx (late offer, or a re-INVITE without SDP)
	// waits for its answer in the ACK; pendingCSeq is that INVITE's CSeq.
	onChat      func(contentType, text string)
	onSignal    func(name string, payload []byte)
	onMedia     func(media.StreamConfig)
	onTransfer  func(*Transfer) error
	referResult chan int // a REFER we sent: status codes from its NOTIFYs

	session sessionTimer // RFC 4028 state

	pres *presenceDialog // a directory user's phone is on this dialog (presence)

	awaitingAnswer bool
	pendingCSeq    uint32
	ackSeen        chan struct{}

	// SRTP (guarded by mu): the policy of the user or trunk at the far
	// end, the a=crypto lines of our last offer (to match its answer) and
	// the tag of the line in use.
	srtp      SRTPPolicy
	offered   []CryptoAttr
	cryptoTag int
}

// ID returns the SIP Call-ID of the leg's dialog.
func (l *Leg) ID() string { return l.callID }

// Inbound reports whether the peer called us.
func (l *Leg) Inbound() bool { return l.inbound }

// User returns the request-URI user: the number or name that was called
// (inbound), or the dialled target (outbound). For tel: URIs it is the
// telephone number.
func (l *Leg) User() string { return l.user }

// From returns the From header value as received or sent.
func (l *Leg) From() string { return l.from }

// To returns the To header value.
func (l *Leg) To() string { return l.to }

// RemoteIdentity returns who is at the far end. Inbound, the caller: the
// P-Asserted-Identity of a trusted trunk's INVITE if it carries one, else
// the From header, with Private set when the INVITE asked for privacy
// (RFC 3323). Outbound, the party we called, from the To header of its
// answer.
func (l *Leg) RemoteIdentity() Identity { return l.remote }

// Header returns the first value of the named header of the INVITE that
// started an inbound leg ("" if absent, and always for outbound legs).
func (l *Leg) Header(name string) string {
	if l.uas == nil || l.uas.InviteRequest == nil {
		return ""
	}
	if h := l.uas.InviteRequest.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// Endpoint returns the leg's RTP endpoint.
func (l *Leg) Endpoint() *media.Endpoint { return l.ep }

// Trunk returns the name of the trunk the call came in on or went out
// through, or "".
func (l *Leg) Trunk() string { return l.trunk }

// SignalingSource returns the IP address an inbound leg's INVITE came
// from (the previous hop: a proxy's, when one is in front), or the zero
// Addr for a leg we dialled.
func (l *Leg) SignalingSource() netip.Addr {
	if !l.inbound || l.uas == nil || l.uas.InviteRequest == nil {
		return netip.Addr{}
	}
	return sourceIP(l.uas.InviteRequest)
}

// AuthUser returns the directory user an inbound INVITE authenticated as,
// or "" for an unauthenticated caller (guest, trunk).
func (l *Leg) AuthUser() string { return l.authUser }

// Done is closed when the leg has ended.
func (l *Leg) Done() <-chan struct{} { return l.done }

// Err returns why the leg ended (nil while it lives).
func (l *Leg) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// State returns the leg's state.
func (l *Leg) State() LegState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Kind returns "sip".
func (l *Leg) Kind() string { return "sip" }

func (l *Leg) end(cause error) {
	l.mu.Lock()
	if l.state == LegEnded {
		l.mu.Unlock()
		return
	}
	l.state = LegEnded
	l.err = cause
	l.mu.Unlock()
	l.stopSessionTimer()
	l.reportDialog(presence.DialogTerminated)
	_ = l.ep.Close()
	if l.web != nil && l.web.Close != nil {
		l.web.Close()
	}
	if l.release != nil {
		l.release()
	}
	if l.uas != nil {
		l.agent.unregister(l.agent.uas, l.regID)
		_ = l.uas.Close()
		if l.sent2xx() {
			l.agent.finishInvite(l.inviteTx)
		}
	}
	if l.uac != nil {
		l.agent.unregister(l.agent.uac, l.regID)
		_ = l.uac.Close()
	}
	l.finalOnce.Do(func() { close(l.final) })
	close(l.done)
	l.mu.Lock()
	fns := l.onEnd
	l.onEnd, l.endFired = nil, true
	l.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// AnsweredAt reports when the call was answered (inbound: the ACK of our
// 2xx, or the 2xx itself when a BYE came in its dialog with no ACK seen;
// outbound: the 2xx), even if it has ended since; zero if it never was.
// A BYE can end a call in the moment after its ACK, before Answer has
// returned; the call was answered all the same (its CDR says so).
func (l *Leg) AnsweredAt() time.Time {
	if ns := l.answeredAt.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// acked records that our 2xx was ACKed (the first ACK counts).
func (l *Leg) acked() { l.answeredAt.CompareAndSwap(0, time.Now().UnixNano()) }

// answeredByBye records, for a BYE in the dialog of our 2xx with no ACK
// seen, that the call was answered when the 2xx went.
func (l *Leg) answeredByBye() { l.answeredAt.CompareAndSwap(0, l.sent2xxAt.Load()) }

// sent2xx reports whether a 2xx went to the INVITE (inbound legs).
func (l *Leg) sent2xx() bool { return l.sent2xxAt.Load() != 0 }

// OnEnd registers fn to run once the leg has ended (after Done is
// closed), in the goroutine that ended it; at once if it already has.
// fn must not block. It costs a closure, where waiting on Done costs a
// goroutine for the whole call.
func (l *Leg) OnEnd(fn func()) {
	l.mu.Lock()
	if l.endFired {
		l.mu.Unlock()
		fn()
		return
	}
	l.onEnd = append(l.onEnd, fn)
	l.mu.Unlock()
}

func (a *Agent) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if _, ours := tx.(*inviteTx); !ours && a.answerRetransmission(req, tx) {
		return // a late copy of an answered call's INVITE: absorbed
	}
	log := a.log.With("call_id", callIDOf(req), "source", req.Source())
	if req.To() != nil {
		if _, ok := req.To().Params.Get("tag"); ok {
			a.onReInvite(req, tx, log)
			return
		}
	}
	invited := time.Now()
	release, admitted := a.admitInvite(req, tx)
	if !admitted {
		return
	}
	defer release()
	if code, problem := validateRequest(req); code != 0 {
		log.Warn("sip: bad INVITE", "problem", problem)
		a.respond(req, tx, code, problem)
		return
	}
	if sc := strings.ToLower(req.Recipient.Scheme); sc != "sip" && sc != "sips" && sc != "tel" {
		log.Info("sip: INVITE for an unsupported URI scheme", "scheme", req.Recipient.Scheme)
		a.respond(req, tx, 416, "Unsupported URI Scheme")
		return
	}
	if unsupported := unsupportedRequire(req); unsupported != "" {
		// RFC 3261 8.2.2.3: options in Require we do not support → 420.
		log.Info("sip: INVITE requires an extension we lack", "require", unsupported)
		res := sip.NewResponseFromRequest(req, 420, "Bad Extension", nil)
		res.AppendHeader(sip.NewHeader("Unsupported", unsupported))
		if err := tx.Respond(res); err != nil {
			log.Debug("sip: respond 420 failed", "error", err)
		}
		return
	}
	if ct := req.ContentType(); ct != nil && !strings.EqualFold(strings.TrimSpace(strings.SplitN(ct.Value(), ";", 2)[0]), "application/sdp") {
		log.Warn("sip: INVITE body is not SDP", "content_type", ct.Value())
		a.respond(req, tx, 415, "Unsupported Media Type")
		return
	}
	var offer *MediaOffer // nil: late offer, we offer in the 200 and the answer comes in the ACK
	webOffer := len(req.Body()) > 0 && IsWebRTCOffer(req.Body())
	switch {
	case webOffer && a.cfg.WebRTC == nil:
		log.Info("sip: a WebRTC offer (ICE, DTLS-SRTP) and no browser bridge to answer it")
		a.respond(req, tx, 488, "Not Acceptable Here (WebRTC media)")
		return
	case webOffer:
		// A browser SIP client over WebSocket: the browser bridge answers
		// its media once the caller is authenticated and admitted.
	case len(req.Body()) > 0:
		var err error
		offer, err = ParseSDP(req.Body())
		switch {
		case errors.Is(err, ErrNoCommonCodec):
			log.Info("sip: no usable audio stream in offer", "error", err)
			a.respond(req, tx, 488, "Not Acceptable Here")
			return
		case err != nil:
			log.Warn("sip: malformed SDP", "error", err)
			a.respond(req, tx, 400, "Bad Request (malformed SDP)")
			return
		}
		if _, _, err := offer.Choose(); err != nil {
			log.Info("sip: no common codec", "offered", formatList(offer))
			a.respond(req, tx, 488, "Not Acceptable Here")
			return
		}
		if a.cfg.NoTelephoneEvent {
			offer.DTMFPayloadType = 0
		}
	}
	fixContact(req)
	authUser, ok := a.authorize(req, tx, log)
	if !ok {
		return
	}
	policy := a.srtpPolicy(authUser, sourceIP(req))
	if offer != nil && len(offer.Crypto) > 0 {
		if _, ok := a.pickCrypto(offer); !ok {
			log.Info("sip: no acceptable SRTP crypto suite offered")
			a.respond(req, tx, 488, "Not Acceptable Here (crypto suite)")
			return
		}
	}
	if offer != nil && policy == SRTPRequired && len(offer.Crypto) == 0 {
		log.Info("sip: plain RTP offered where SRTP is required", "auth_user", authUser, "proto", offer.Proto)
		a.respond(req, tx, 488, "Not Acceptable Here (SRTP required)")
		return
	}
	session, code, minSE := a.negotiateInbound(req)
	switch code {
	case 422:
		log.Info("sip: session interval too small", "min_se", minSE)
		res := sip.NewResponseFromRequest(req, 422, "Session Interval Too Small", nil)
		res.AppendHeader(sip.NewHeader("Min-SE", strconv.Itoa(int(minSE.Seconds()))))
		if err := tx.Respond(res); err != nil {
			log.Debug("sip: respond 422 failed", "error", err)
		}
		return
	case 400:
		log.Warn("sip: bad Session-Expires")
		a.respond(req, tx, 400, "Bad Request (Session-Expires)")
		return
	}
	var replaced *Leg // an INVITE with Replaces (RFC 3891): the leg it takes over
	if h := req.GetHeader("Replaces"); h != nil {
		rep, err := ParseReplaces(h.Value())
		if err != nil {
			log.Warn("sip: bad Replaces header", "replaces", h.Value(), "error", err)
			a.respond(req, tx, 400, "Bad Request (Replaces)")
			return
		}
		replaced = a.LegFor(rep)
		switch {
		case a.cfg.OnReplace == nil:
			a.respond(req, tx, 501, "Not Implemented (Replaces)")
			return
		case replaced == nil || replaced.State() == LegEnded:
			log.Info("sip: Replaces names no dialog of ours", "replaces", rep.String())
			a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
			return
		case rep.EarlyOnly && replaced.State() == LegAnswered:
			a.respond(req, tx, 486, "Busy Here")
			return
		}
	}
	// No 100 Trying of our own: sipgo's INVITE server transaction sends
	// one if no response has gone 200 ms after the INVITE (RFC 3261
	// 17.2.1), so a flow that answers or rings at once costs one datagram
	// less per call.
	if a.cfg.OnInvite == nil {
		a.respond(req, tx, 480, "Temporarily Unavailable")
		return
	}
	dtx, err := a.duaFor(req.Transport()).ReadInvite(req, tx)
	if err != nil {
		log.Warn("sip: cannot create dialog", "error", err)
		a.respond(req, tx, 400, "Bad Request")
		return
	}
	l := &Leg{
		agent: a, log: log, inbound: true, callID: callIDOf(req),
		from: headerValue(req.From()), to: headerValue(req.To()),
		user: requestUser(req), ip: a.advertiseIP(sourceIP(req)),
		uas: dtx, offer: offer, inviteTx: tx, authUser: authUser, session: session, srtp: policy,
		done: make(chan struct{}), final: make(chan struct{}), regID: dtx.ID, invited: invited, unpend: release,
	}
	trusted := false
	if t, ok := a.trunkFor(sourceIP(req)); ok {
		if !t.isDID(l.user) {
			log.Info("sip: trunk call to a number that is not our DID", "trunk", t.Name, "number", l.user)
			_ = dtx.Respond(404, "Not Found", nil)
			return
		}
		l.trunk = t.Name
		trusted = t.Trusted
	} else if !a.admit(req, tx, l, log) {
		return
	}
	l.remote = callerIdentity(req, trusted, log, &a.identityLog)
	if webOffer {
		if l.web, err = a.cfg.WebRTC(req.Body()); err != nil {
			log.Info("sip: the WebRTC offer cannot be answered", "error", err)
			a.respond(req, tx, 488, "Not Acceptable Here (WebRTC media)")
			if l.release != nil {
				l.release()
			}
			return
		}
		l.ep = l.web.Endpoint
	} else {
		l.ep, err = a.newEndpoint(log, func() { l.mediaTimeout() })
	}
	if err != nil {
		reason := "Service Unavailable (no media ports)"
		// Every INVITE meets the same empty pool: log a few a second.
		logged, held := a.overloadLog.allow(time.Now())
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || descriptorsExhausted() {
			// Say what ran out: descriptors, not ports.
			reason = "Service Unavailable (out of file descriptors)"
			if logged {
				log.Error("sip: out of file descriptors for the call's RTP sockets", "error", err, "open_connections", a.guard.open(), "fd_limit", descriptorLimit(), "suppressed_before", held)
			}
		} else if logged {
			log.Error("sip: no RTP port for call", "error", err, "suppressed_before", held)
		}
		a.observer().InviteRejected(RejectNoPorts)
		a.respondRetryAfter(req, tx, reason)
		if l.release != nil {
			l.release()
		}
		return
	}
	if !a.register(a.uas, dtx.ID, l) {
		_ = l.ep.Close()
		a.observer().InviteRejected(RejectShuttingDown)
		if l.release != nil {
			l.release()
		}
		a.respond(req, tx, 503, "Service Unavailable (shutting down)")
		return
	}
	if authUser != "" {
		// The caller's phone is a directory user's: it is placing a call.
		l.trackPresence(authUser, presence.Initiator, req.From().Address.String(), req.Recipient.String(),
			tagOf(req.From().Params), tagOf(dtx.InviteRequest.To().Params))
		l.reportDialog(presence.DialogTrying)
	}
	if replaced != nil {
		log.Info("sip: incoming call replaces a dialog", "replaced", replaced.ID(), "from", l.from)
		a.cfg.OnReplace(l, replaced)
	} else {
		if log.Enabled(context.Background(), slog.LevelInfo) { // the arguments cost allocations even unwritten
			log.Info("sip: incoming call", "user", l.user, "from", l.from, "transport", req.Transport())
		}
		a.cfg.OnInvite(l)
	}
	// The INVITE transaction lives until the final response is sent (and a
	// 2xx ACKed), or the caller cancels.
	select {
	case <-l.final:
	case <-dtx.Context().Done():
		if l.answeredAt.Load() != 0 {
			// ACKed, then a BYE ended the dialog before Answer had
			// returned: onBye ends the leg as a hangup, not a cancel.
			return
		}
		log.Info("sip: caller canceled before answer")
		l.end(ErrCanceled)
	}
}

func (l *Leg) mediaTimeout() {
	if l.State() != LegAnswered {
		return
	}
	l.log.Warn("sip: no RTP received, hanging up", "timeout", l.agent.cfg.MediaTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.hangup(ctx, ErrMediaTimeout)
}

// onReInvite handles an INVITE inside an existing dialog: a session refresh,
// a hold/unhold, or a media address change. Media follows the new offer.
func (a *Agent) onReInvite(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if l.uas != nil {
		if err := l.uas.ReadRequest(req, tx); err != nil {
			a.respond(req, tx, 500, "Server Internal Error")
			return
		}
	}
	if len(req.Body()) == 0 {
		cfg := l.ep.Config()
		// Empty re-INVITE: the peer asks for an offer; the answer comes in
		// the ACK. Carriers use it to refresh or to renegotiate after a
		// transfer.
		body := l.ourOffer(&cfg)
		ack := make(chan struct{})
		l.mu.Lock()
		l.awaitingAnswer, l.pendingCSeq, l.ackSeen = true, req.CSeq().SeqNo, ack
		l.mu.Unlock()
		res := sip.NewSDPResponseFromRequest(req, body)
		res.AppendHeader(a.contactFor(l.ip, req.Transport()))
		l.sessionRefreshed(req, res)
		l.respond2xx(tx, res, ack)
		log.Info("sip: offered SDP in answer to an empty re-INVITE")
		return
	}
	body, code := l.applyRemoteOffer(req.Body())
	if code != 0 {
		a.respond(req, tx, code, "Not Acceptable Here")
		return
	}
	res := sip.NewSDPResponseFromRequest(req, body)
	res.AppendHeader(a.contactFor(l.ip, req.Transport()))
	ack := make(chan struct{})
	l.mu.Lock()
	l.pendingCSeq, l.ackSeen = req.CSeq().SeqNo, ack
	l.mu.Unlock()
	l.sessionRefreshed(req, res)
	l.respond2xx(tx, res, ack)
}

// applyRemoteOffer applies an SDP offer received in a confirmed dialog
// (re-INVITE or UPDATE): codec, the peer's address (media follows a move)
// and direction, answered with the reverse direction (c=0.0.0.0 is the
// old-style hold: inactive). It returns our answer, or the status to
// refuse the offer with.
func (l *Leg) applyRemoteOffer(sdp []byte) ([]byte, int) {
	if l.web != nil {
		// WebRTC renegotiation (ICE restart, hold) is not answered yet.
		l.log.Info("sip: mid-dialog offer on a WebRTC leg refused")
		return nil, 488
	}
	o, err := ParseSDP(sdp)
	if err != nil {
		l.log.Warn("sip: bad SDP in mid-dialog offer", "error", err)
		return nil, 488
	}
	body, err := l.answerOffer(o)
	if errors.Is(err, ErrSRTPRequired) {
		l.log.Info("sip: plain RTP offered mid-dialog where SRTP is required")
		return nil, 488
	}
	if err != nil {
		l.log.Info("sip: no common codec in mid-dialog offer", "offered", formatList(o))
		return nil, 488
	}
	cfg := l.ep.Config()
	l.mediaChanged(cfg)
	l.log.Info("sip: mid-dialog offer applied", "remote", cfg.Remote.String(), "direction", cfg.Direction, "codec", cfg.Codec.Name)
	return body, 0
}

// OnMediaUpdate sets the callback told of every renegotiation of the
// leg's media in the dialog (a re-INVITE or UPDATE, from either side):
// the new codec, address and direction. The owner re-decides how the leg
// is bridged — packets of a new codec must not be forwarded as the old
// one. It runs on the request's goroutine and must not block.
func (l *Leg) OnMediaUpdate(fn func(media.StreamConfig)) {
	l.mu.Lock()
	l.onMedia = fn
	l.mu.Unlock()
}

func (l *Leg) mediaChanged(cfg media.StreamConfig) {
	l.mu.Lock()
	fn := l.onMedia
	l.mu.Unlock()
	if fn != nil {
		fn(cfg)
	}
}

// answerOffer configures the endpoint for an offer (initial or
// mid-dialog) and returns our SDP answer: the offerer's payload type for
// the first codec we share, its telephone-event type, its address (media
// follows a move), its packet size (ptime 40/60) and rtcp-mux, and the
// reverse of its direction (c=0.0.0.0, the old-style hold: inactive).
func (l *Leg) answerOffer(o *MediaOffer) ([]byte, error) {
	spec, pt, err := o.Choose()
	if err != nil {
		return nil, err
	}
	cfg := l.ep.Config()
	var crypto []CryptoAttr
	l.mu.Lock()
	required := l.srtp == SRTPRequired
	var remote []byte
	if len(o.Crypto) > 0 {
		// SDES: the offer's first line we accept, answered with its tag
		// and suite and our own key (kept across re-offers of the suite).
		c, ok := l.agent.pickCrypto(o)
		if !ok {
			l.mu.Unlock()
			return nil, fmt.Errorf("%w: no acceptable SRTP crypto suite", ErrNoCommonCodec)
		}
		remote = c.Key
		local := newCryptoKey(c.Suite)
		if cfg.SRTP != nil && cfg.SRTP.Suite == c.Suite {
			local = cfg.SRTP.Local
		}
		crypto = []CryptoAttr{{Tag: c.Tag, Suite: c.Suite, Key: local}}
		l.cryptoTag = c.Tag
	}
	l.mu.Unlock()
	if len(crypto) == 0 && required {
		return nil, ErrSRTPRequired
	}
	cfg.SRTP = nil
	if len(crypto) > 0 {
		cfg.SRTP = &transport.SRTPKeys{Suite: crypto[0].Suite, Local: crypto[0].Key, Remote: remote}
	}
	cfg.Codec, cfg.PayloadType, cfg.DTMFPayloadType = spec, pt, o.DTMFPayloadType
	if l.agent.cfg.NoTelephoneEvent {
		cfg.DTMFPayloadType = 0
	}
	cfg.Remote, cfg.RTCPMux, cfg.RemoteRTCP = o.Remote, o.RTCPMux, o.RTCP
	cfg.FramesPerPacket = o.FramesPerPacket()
	if l.inbound && l.uas != nil && !cfg.NATSource.IsValid() {
		cfg.NATSource = sourceIP(l.uas.InviteRequest)
	}
	if o.Remote.Addr().IsUnspecified() { // RFC 2543 hold: c=0.0.0.0
		cfg.Direction = "inactive"
	} else {
		cfg.Direction = ReverseDirection(o.Direction)
	}
	l.ep.Configure(cfg)
	return SessionSDP{Addr: netip.AddrPortFrom(l.ip, l.ep.LocalAddr().Port()), Codecs: []codec.CodecSpec{cfg.Codec},
		PTs: []uint8{cfg.PayloadType}, DTMFPT: cfg.DTMFPayloadType, Direction: cfg.Direction, RTCPMux: cfg.RTCPMux, RTCPOnRTPPort: l.agent.cfg.RTCPOnRTPPort,
		PTime: time.Duration(cfg.FramesPerPacket) * 20 * time.Millisecond, Crypto: crypto, Answer: o}.Marshal(), nil
}

// respond2xx sends a 2xx to a re-INVITE and, over UDP, retransmits it
// (T1 doubling up to T2) until the ACK arrives, the leg ends, or 64*T1
// pass (RFC 3261 13.3.1.4).
func (l *Leg) respond2xx(tx sip.ServerTransaction, res *sip.Response, ack <-chan struct{}) {
	if err := tx.Respond(res); err != nil {
		l.log.Warn("sip: re-INVITE response failed", "error", err)
		return
	}
	if sip.IsReliable(res.Transport()) {
		return
	}
	interval := sip.T1
	giveUp := time.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	for {
		t := time.NewTimer(interval)
		select {
		case <-ack:
			t.Stop()
			return
		case <-l.done:
			t.Stop()
			return
		case <-giveUp.C:
			t.Stop()
			l.log.Warn("sip: no ACK for re-INVITE 2xx")
			return
		case <-t.C:
			_ = l.agent.srv.WriteResponse(res)
			interval = min(2*interval, sip.T2)
		}
	}
}

// Ringing sends 180 Ringing on an inbound leg that is not answered yet.
func (l *Leg) Ringing() error {
	if !l.inbound {
		return nil
	}
	l.respMu.Lock()
	defer l.respMu.Unlock()
	l.mu.Lock()
	early := l.state == LegEarly && !l.answering
	l.mu.Unlock()
	if !early {
		return nil
	}
	err := l.uas.Respond(180, "Ringing", nil, l.agent.contactFor(l.ip, l.uas.InviteRequest.Transport()))
	if err == nil {
		l.reportDialog(presence.DialogEarly)
	}
	return err
}

// Answer sends 200 OK with the SDP answer and waits for the ACK. Media
// starts flowing before the 200 goes out.
func (l *Leg) Answer(ctx context.Context) error {
	if !l.inbound {
		return errors.New("sip: answer on an outbound leg")
	}
	l.mu.Lock()
	switch {
	case l.state == LegEnded:
		l.mu.Unlock()
		return fmt.Errorf("sip: answer %s: %w", l.callID, l.errLocked())
	case l.state == LegAnswered || l.answering:
		l.mu.Unlock()
		return nil
	}
	l.answering = true
	l.mu.Unlock()

	var body []byte
	codecName := "(in ACK)"
	if l.web != nil {
		// WebRTC: the bridge's answer (ICE, DTLS); its stream runs.
		body, codecName = l.web.Answer, l.ep.Config().Codec.Name
	} else if l.offer == nil {
		// Late offer: we offer now; the answer arrives in the ACK (onAck).
		body = l.ourOffer(nil)
		l.mu.Lock()
		l.awaitingAnswer, l.pendingCSeq = true, l.uas.InviteRequest.CSeq().SeqNo
		l.mu.Unlock()
	} else {
		// onInvite checked the codec and the SRTP policy; refuse the
		// offer anyway should answering it still fail.
		var err error
		if body, err = l.answerOffer(l.offer); err != nil {
			l.log.Warn("sip: offer cannot be answered", "error", err)
			l.mu.Lock()
			l.answering = false
			l.mu.Unlock()
			_ = l.Reject(488, "Not Acceptable Here")
			return fmt.Errorf("sip: answer %s: %w", l.callID, err)
		}
		codecName = l.ep.Config().Codec.Name
		l.ep.Start()
	}
	res := sip.NewSDPResponseFromRequest(l.uas.InviteRequest, body)
	res.AppendHeader(l.agent.contactFor(l.ip, l.uas.InviteRequest.Transport()))
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Supported", supported))
	l.mu.Lock()
	l.session.headers(res, false)
	l.mu.Unlock()
	errc := make(chan error, 1)
	sent := time.Now()
	l.sent2xxAt.Store(sent.UnixNano())
	l.agent.work.Go(func() {
		l.respMu.Lock()
		defer l.respMu.Unlock()
		errc <- l.uas.WriteResponse(res)
	})
	w := ackWait{sent: sent, wait: l.agent.cfg.AckTimeout}
	if !sip.IsReliable(res.Transport()) {
		w.fills = twoxxFills[:]
	}
	noAck := w.arm()
	if w.t != nil {
		defer w.t.Stop()
	}
	var err error
	for {
		select {
		case err = <-errc:
		case <-noAck:
			overload := l.agent.refusedSince(sent.Add(-l.agent.cfg.AckTimeout))
			if w.fillDue() {
				// A copy sipgo's schedule skips (see twoxxFills). A
				// failed send is like a lost datagram: the next copy or
				// the caller's INVITE retransmission covers it. Under
				// overload the ACK is late because someone is behind,
				// not lost: more copies would only add to the queue
				// (12,000/s bursts with them kept so many calls waiting
				// for their ACK that new calls were refused for the
				// 5 s after).
				if !overload {
					_ = l.agent.srv.WriteResponse(res)
				}
				w.fills = w.fills[1:]
				w.arm()
				continue
			}
			if full := 64 * sip.T1; w.wait < full && overload {
				// Overload: the ACK may be queued behind the flood (ours
				// or the caller's). Wait as long as the 200 is
				// retransmitted.
				w.wait = full
				w.arm()
				// Waiting on for the ACK is no setup work of ours: the
				// call stops counting as a pending INVITE. Else, after
				// a burst, answered calls whose callers had given up
				// (no ACK will come) held the pending count above the
				// scaled limit's floor for 32 s, and every new call was
				// refused meanwhile.
				l.unpend()
				continue
			}
			// Nobody confirms the call: a spoofed or abandoned INVITE.
			// Stop retransmitting the 200 and give the port back now
			// rather than after 64*T1.
			err = fmt.Errorf("%w within %s", ErrNoAck, w.wait)
		case <-l.done:
			err = l.Err()
			if l.answeredAt.Load() == 0 {
				go l.byeIfAnsweredLate(errc)
			}
		case <-ctx.Done():
			err = ctx.Err()
			go l.byeIfAnsweredLate(errc)
		}
		break
	}
	if at := l.answeredAt.Load(); err != nil && at != 0 && ctx.Err() == nil {
		// The caller had our 2xx (its ACK came, or a BYE in its dialog)
		// by the time this goroutine looked: answered.
		err = nil
		if l.State() == LegEnded || l.uas.LoadState() == sip.DialogStateEnded {
			// And ended already (a BYE right behind the ACK): the end
			// follows as usual.
			l.finalOnce.Do(func() { close(l.final) })
			l.agent.observer().CallAnswered(time.Duration(at - l.invited.UnixNano()))
			return nil
		}
	}
	if err != nil {
		if !errors.Is(err, ErrNoAck) {
			l.log.Warn("sip: answer failed", "error", err)
		} else if ok, suppressed := l.agent.admitLog.allow(time.Now()); ok {
			// A flood of spoofed INVITEs must not flood the log too.
			l.log.Warn("sip: answered call never ACKed; ended and its port released", "error", err, "suppressed", suppressed)
		}
		l.end(fmt.Errorf("sip: answer: %w", err))
		if errors.Is(err, ErrNoAck) {
			l.inviteTx.Terminate() // stops the 200's retransmissions
			l.agent.finishInvite(l.inviteTx)
		}
		return fmt.Errorf("sip: answer %s: %w", l.callID, err)
	}
	l.acked() // the dialog is confirmed: set if whoever confirmed it has not yet
	l.mu.Lock()
	if l.state == LegEarly {
		l.state = LegAnswered
	}
	st, noAnswer := l.state, l.awaitingAnswer
	l.mu.Unlock()
	l.finalOnce.Do(func() { close(l.final) })
	if st != LegAnswered {
		return fmt.Errorf("sip: answer %s: %w", l.callID, l.Err())
	}
	if noAnswer {
		// RFC 3264: an offer in a 2xx must be answered in the ACK.
		l.log.Warn("sip: ACK carried no usable SDP answer to our offer; hanging up")
		_ = l.hangup(context.Background(), fmt.Errorf("%w: no SDP answer in ACK", ErrBadSDP))
		return fmt.Errorf("sip: answer %s: no SDP answer in ACK: %w", l.callID, ErrBadSDP)
	}
	l.armSessionTimer()
	l.reportDialog(presence.DialogConfirmed)
	l.agent.observer().CallAnswered(time.Since(l.invited))
	if l.log.Enabled(context.Background(), slog.LevelInfo) { // the arguments cost allocations even unwritten
		l.log.Info("sip: answered", "codec", codecName, "srtp", srtpSuiteName(l.ep.Config()))
	}
	return nil
}

// twoxxFills are the times after the first 200 to an INVITE at which
// Answer sends a copy itself. RFC 3261 13.3.1.4 retransmits a 2xx at
// intervals that start at T1 and double up to T2: 0.5, 1.5, 3.5 s, then
// every 4 s. sipgo's DialogServerSession sends its copies at T1 and then
// every T2 (0.5, 4.5, 8.5 s ...), so within the 4 s AckTimeout a caller
// had two chances instead of four: a 200 and one copy lost ended the
// call. The copies at 1.5 and 3.5 s fill in the doublings.
var twoxxFills = [2]time.Duration{3 * sip.T1, 7 * sip.T1}

// ackWait is Answer's one timer while it waits for the ACK of its 200:
// it fires for each copy of the 200 still to send (fills) and at the
// AckTimeout (wait; none when zero), whichever is next, counted from
// sent.
type ackWait struct {
	sent  time.Time
	fills []time.Duration
	wait  time.Duration
	t     *time.Timer
}

// fillDue reports whether the timer fired for a copy of the 200 rather
// than for the AckTimeout.
func (w *ackWait) fillDue() bool {
	return len(w.fills) > 0 && (w.wait <= 0 || w.fills[0] < w.wait)
}

// arm sets the timer for the next event and returns its channel (nil
// when there is none to wait for).
func (w *ackWait) arm() <-chan time.Time {
	next := w.wait
	if w.fillDue() {
		next = w.fills[0]
	}
	if next <= 0 {
		return nil
	}
	d := max(next-time.Since(w.sent), 0)
	if w.t == nil {
		w.t = time.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	return w.t.C
}

// byeIfAnsweredLate waits for a 200 that was still on its way when Answer
// gave up; if the peer ACKs it after all, the dialog exists on its side and
// only a BYE ends it.
func (l *Leg) byeIfAnsweredLate(errc <-chan error) {
	if err := <-errc; err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	if err := l.uas.Bye(ctx); err != nil {
		l.log.Info("sip: BYE after abandoned answer not confirmed", "error", err)
	}
}

// ourOffer builds an SDP offer from this leg's endpoint: the current codec
// first when there is one, then the rest we support, and telephone-event.
func (l *Leg) ourOffer(current *media.StreamConfig) []byte {
	var codecs []codec.CodecSpec
	var pts []uint8
	dtmf := uint8(101)
	if l.agent.cfg.NoTelephoneEvent {
		dtmf = 0
	}
	if current != nil && current.Codec.New != nil {
		codecs, pts = append(codecs, current.Codec), append(pts, current.PayloadType)
		if current.DTMFPayloadType != 0 {
			dtmf = current.DTMFPayloadType
		}
	}
	for _, c := range l.agent.cfg.Codecs {
		if len(codecs) > 0 && c.Name == codecs[0].Name {
			continue
		}
		codecs, pts = append(codecs, c), append(pts, c.PayloadType)
	}
	return SessionSDP{Addr: netip.AddrPortFrom(l.ip, l.ep.LocalAddr().Port()), Codecs: codecs, PTs: pts, DTMFPT: dtmf,
		Crypto: l.offerCryptoFor(current), RTCPOnRTPPort: l.agent.cfg.RTCPOnRTPPort}.Marshal()
}

// readAckAnswer applies the SDP answer an ACK carries to the offer we made
// in a 2xx. It reports whether an answer was pending.
func (l *Leg) readAckAnswer(req *sip.Request) {
	l.mu.Lock()
	pending := l.awaitingAnswer && req.CSeq() != nil && req.CSeq().SeqNo == l.pendingCSeq
	ack := l.ackSeen
	if ack != nil && req.CSeq() != nil && req.CSeq().SeqNo == l.pendingCSeq {
		l.ackSeen = nil
	} else {
		ack = nil
	}
	l.mu.Unlock()
	if ack != nil {
		close(ack)
	}
	if !pending {
		return
	}
	cfg, err := l.answerConfig(req.Body())
	if err != nil {
		l.log.Warn("sip: bad SDP answer in ACK", "error", err)
		return
	}
	l.mu.Lock()
	l.awaitingAnswer = false
	l.mu.Unlock()
	cfg.NATSource = sourceIP(req)
	l.ep.Configure(cfg)
	l.ep.Verify() // the ACK itself proves the peer
	l.ep.Start()
	l.mediaChanged(cfg)
	l.log.Info("sip: SDP answer from ACK applied", "codec", cfg.Codec.Name, "remote", cfg.Remote.String(), "direction", cfg.Direction)
}

func (l *Leg) errLocked() error {
	if l.err != nil {
		return l.err
	}
	return ErrLocalHangup
}

// Reject answers an inbound leg that is not answered yet with a final
// error response (e.g. 486 Busy Here, 603 Decline).
func (l *Leg) Reject(code int, reason string) error {
	if !l.inbound {
		return errors.New("sip: reject on an outbound leg")
	}
	if code < 300 || code > 699 {
		return fmt.Errorf("sip: reject with %d: not an error status", code)
	}
	l.mu.Lock()
	if l.state != LegEarly || l.answering {
		l.mu.Unlock()
		return fmt.Errorf("sip: reject %s: call already answered or ended", l.callID)
	}
	l.answering = true
	l.mu.Unlock()
	if reason == "" {
		reason = defaultReason(code)
	}
	if code == 404 && l.trunk == "" && l.authUser == "" {
		// Scanners walk extension numbers: unknown-user calls from one
		// source count like failed logins.
		l.agent.authFailed(sourceIP(l.uas.InviteRequest), "", l.log, "sip: call to unknown user", "user", l.user, "from", l.from)
	}
	// Straight to the transaction, which retransmits the final response
	// and absorbs its ACK: sipgo's dialog would block here until the ACK,
	// up to 32 s, if the peer never sends one.
	l.respMu.Lock()
	err := l.inviteTx.Respond(sip.NewResponseFromRequest(l.uas.InviteRequest, code, reason, nil))
	l.respMu.Unlock()
	l.end(fmt.Errorf("%w: rejected with %d", ErrLocalHangup, code))
	return err
}

// Hangup ends the leg: BYE when answered, 480 before an inbound answer,
// CANCEL before an outbound answer. It returns when the leg has ended.
func (l *Leg) Hangup(ctx context.Context) error { return l.hangup(ctx, ErrLocalHangup) }

func (l *Leg) hangup(ctx context.Context, cause error) error {
	l.mu.Lock()
	st, answering := l.state, l.answering
	l.mu.Unlock()
	switch st {
	case LegEnded:
		return nil
	case LegEarly:
		if l.inbound && !answering {
			_ = l.Reject(480, "Temporarily Unavailable")
			return nil
		}
		if l.inbound {
			// 200 is on its way; let it be ACKed, then BYE.
			select {
			case <-l.final:
			case <-ctx.Done():
			}
			// The answer may have failed or been overtaken (CANCEL, ctx):
			// only a leg whose 2xx went out may be ended with BYE.
			l.mu.Lock()
			st = l.state
			l.mu.Unlock()
			if st != LegAnswered {
				l.end(cause)
				return nil
			}
		} else {
			l.end(cause) // an outbound dial in progress is canceled by its ctx
			return nil
		}
	}
	// The dialog ends when the BYE is sent (RFC 3261 15.1.1); waiting for
	// its response only tells us whether the peer heard it. Bound that
	// wait: a peer that went away would otherwise hold the leg, its call
	// and a shutdown for the whole non-INVITE transaction (Timer F, 32 s).
	byeCtx, cancel := context.WithTimeout(ctx, byeWait)
	defer cancel()
	var err error
	if l.uas != nil {
		err = l.uas.Bye(byeCtx)
	} else {
		err = l.uac.Bye(byeCtx)
	}
	if err != nil {
		l.log.Info("sip: BYE not confirmed", "error", err)
	}
	l.end(cause)
	return nil
}

// byeWait bounds how long a hangup waits for the response to its BYE
// (seven retransmissions over UDP).
const byeWait = 5 * time.Second

func defaultReason(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return "Error"
}

func callIDOf(req *sip.Request) string {
	if c := req.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

func headerValue(h sip.Header) string {
	if h == nil {
		return ""
	}
	return h.Value()
}

// requestUser returns the user part of the request URI; for tel: URIs the
// number without its parameters.
func requestUser(req *sip.Request) string {
	u := req.Recipient
	user := u.User
	if strings.EqualFold(u.Scheme, "tel") {
		user = u.Raw()
		if i := strings.IndexByte(user, ';'); i >= 0 {
			user = user[:i]
		}
	}
	// RFC 3261 19.1.4: escaped characters compare equal to their
	// unescaped forms ("t%6Fne" is "tone").
	if strings.IndexByte(user, '%') >= 0 {
		if un, err := url.PathUnescape(user); err == nil {
			user = un
		}
	}
	return user
}

func formatList(o *MediaOffer) string {
	var b strings.Builder
	for i, f := range o.Formats {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d", f.PayloadType)
	}
	return b.String()
}

// validateRequest checks what RFC 3261 section 8.2 needs before a request
// can be processed; it returns the status and reason phrase to reject it
// with, or 0.
func validateRequest(req *sip.Request) (int, string) {
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return 483, "Too Many Hops"
	}
	if p := missingHeader(req); p != "" {
		return 400, "Bad Request (" + p + ")"
	}
	return 0, ""
}

// unsupportedRequire lists the option tags of the request's Require
// headers that we do not implement (none yet: no 100rel, no timer).
func unsupportedRequire(req *sip.Request) string {
	var out []string
	for _, h := range req.GetHeaders("Require") {
		for _, tag := range strings.Split(h.Value(), ",") {
			if tag = strings.TrimSpace(tag); tag != "" && !strings.EqualFold(tag, "timer") && !strings.EqualFold(tag, "replaces") {
				out = append(out, tag)
			}
		}
	}
	return strings.Join(out, ", ")
}

func missingHeader(req *sip.Request) string {
	switch {
	case req.From() == nil:
		return "missing From"
	case req.To() == nil:
		return "missing To"
	case req.CallID() == nil || req.CallID().Value() == "":
		return "missing Call-ID"
	case req.CSeq() == nil:
		return "missing CSeq"
	case req.CSeq().MethodName != req.Method:
		return "CSeq method does not match"
	case req.Via() == nil:
		return "missing Via"
	case req.Method == sip.INVITE && req.Contact() == nil:
		return "missing Contact"
	}
	return ""
}
