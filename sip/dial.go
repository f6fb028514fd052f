package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/presence"
)

// Typed outcomes of a dial that did not connect. Match with errors.Is; the
// *StatusError in the chain carries the exact SIP status.
var (
	ErrBusy     = errors.New("sip: busy")            // 486, 600
	ErrDeclined = errors.New("sip: declined")        // 603
	ErrNotFound = errors.New("sip: not found")       // 404, 604
	ErrNoAnswer = errors.New("sip: no answer")       // 408, 480, ring timeout
	ErrRejected = errors.New("sip: call failed")     // any other final error response
	ErrNoCodec  = errors.New("sip: no common codec") // 488, 606, or an answer we cannot use
)

// StatusError is a final error response to an INVITE we sent.
type StatusError struct {
	Code   int
	Reason string
	kind   error
}

// Error returns the status line's code and reason ("486 Busy Here"); the
// error that wraps it says which request it answered.
func (e *StatusError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// Unwrap returns the typed error (ErrBusy, ...) the status maps to.
func (e *StatusError) Unwrap() error { return e.kind }

func statusError(code int, reason string) *StatusError {
	kind := ErrRejected
	switch code {
	case 486, 600:
		kind = ErrBusy
	case 603:
		kind = ErrDeclined
	case 404, 604:
		kind = ErrNotFound
	case 408, 480:
		kind = ErrNoAnswer
	case 488, 606:
		kind = ErrNoCodec
	}
	return &StatusError{Code: code, Reason: reason, kind: kind}
}

// DialOptions tune an outbound call. The zero value dials with a 30 s ring
// timeout as "switchboard".
type DialOptions struct {
	// FromUser is the user part of the From URI (caller id).
	FromUser string
	// FromName is the display name of From.
	FromName string
	// FromHost is the host part of the From URI; empty means this
	// agent's address.
	FromHost string
	// Private hides the caller's identity (RFC 3323): an untrusted peer
	// sees From "Anonymous" <sip:anonymous@anonymous.invalid>; a trusted
	// one sees the identity with "Privacy: id".
	Private bool
	// Trusted marks the peer as trusted with identities (RFC 3325): it is
	// sent a P-Asserted-Identity. DialTrunk sets it for trunks marked
	// Trusted.
	Trusted bool
	// Timeout is how long to ring before canceling; 0 means 30 s.
	Timeout time.Duration
	// Username and Password answer 401/407 digest challenges.
	Username, Password string
	// Headers are added to the INVITE.
	Headers map[string]string
	// OnProgress is called with each provisional response's status code
	// (180, 183, ...); early media already flows to the endpoint's sink.
	OnProgress func(code int)
	// Destination, if set (host:port), is where the INVITE is sent instead
	// of the request URI's host: the source address of a registration
	// behind NAT.
	Destination string
	// Route is a preloaded route set (RFC 3261 8.1.2), name-addrs such as
	// "<sip:proxy.example;lr>", sent as Route headers; without a
	// Destination the INVITE goes to the first one's host. Dialling a
	// registered user sets it to the registration's Path (RFC 3327).
	Route []string
	// Transport forces "UDP", "TCP", "TLS", "WS" or "WSS".
	Transport string
	// SRTP makes the call offer RTP/SAVP with SDES keys (SRTPRequired,
	// or SRTPOptional, which places the call again with plain RTP if the
	// peer answers 488 or 606). Dialling a trunk or a directory user
	// with SRTPOff takes the trunk's or account's policy.
	SRTP SRTPPolicy

	// PresenceUser, if set, is the user whose phone this INVITE rings:
	// the dialog is reported to the agent's presence store as that
	// user's (recipient: trying, early on a tagged 18x, confirmed,
	// terminated), so they show ringing, then on a call. Dial sets it
	// for each registered contact it forks to; set it when dialling a
	// user's contact found elsewhere (a cluster node's registrations).
	PresenceUser string
	// OfferRTPAddr, if valid, is the RTP address written into the SDP
	// offer instead of the endpoint's own, and RTPVia, if set, is given
	// the answer's RTP address and returns where the endpoint sends
	// instead. Together they put an in-process relay between the call's
	// media and the far end (the test harness's network impairment).
	// RTCP is not redirected.
	OfferRTPAddr netip.AddrPort
	RTPVia       func(remote netip.AddrPort) netip.AddrPort
}

// ErrNotRegistered means Dial was given a user name that has no live
// registration. It matches ErrNotFound too.
var ErrNotRegistered error = notRegistered{}

type notRegistered struct{}

func (notRegistered) Error() string        { return "user not registered" }
func (notRegistered) Is(target error) bool { return target == ErrNotFound }

// Dial calls target: a registered user's name (every registered contact
// rings; the first to answer wins and the others are canceled), or a SIP
// URI / user@host (see DialURI).
func (a *Agent) Dial(ctx context.Context, target string, opts DialOptions) (*Leg, error) {
	if strings.ContainsAny(target, "@:") {
		return a.DialURI(ctx, target, opts)
	}
	if a.cfg.Registrar == nil {
		return nil, fmt.Errorf("sip: dial %q: %w (no registrar)", target, ErrNotRegistered)
	}
	if opts.SRTP == SRTPOff && a.cfg.Registrar.Directory != nil {
		if acct, ok := a.cfg.Registrar.Directory.Lookup(target); ok {
			opts.SRTP = acct.SRTP
		}
	}
	bindings := a.cfg.Registrar.Lookup(target)
	if len(bindings) == 0 {
		return nil, fmt.Errorf("sip: dial %q: %w", target, ErrNotRegistered)
	}
	return a.fork(ctx, target, bindings, opts)
}

func (a *Agent) fork(ctx context.Context, user string, bindings []Binding, opts DialOptions) (*Leg, error) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		leg *Leg
		err error
	}
	results := make(chan result, len(bindings))
	for _, b := range bindings {
		o := opts
		o.Destination, o.Transport = a.routeTo(b)
		o.Route = b.Path
		o.PresenceUser = user
		go func() {
			leg, err := a.DialURI(fctx, b.Contact, o)
			results <- result{leg, err}
		}()
	}
	var winner *Leg
	var errs []error
	for range bindings {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case winner == nil:
			winner = r.leg
			cancel() // the other contacts stop ringing
		default:
			go func() { _ = r.leg.Hangup(context.Background()) }() // answered too late
		}
	}
	if winner != nil {
		return winner, nil
	}
	// Prefer the most telling failure: busy over the rest.
	for _, err := range errs {
		if errors.Is(err, ErrBusy) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("sip: dial user %q: %w", user, errs[0])
}

// DialURI sends an INVITE to target (a sip: or tel: URI, or user@host) and
// waits for the answer. Canceling ctx or the ring timeout sends CANCEL. On
// success the leg is answered, ACKed and its media running.
func (a *Agent) DialURI(ctx context.Context, target string, opts DialOptions) (*Leg, error) {
	leg, err := a.dialURI(ctx, target, opts)
	var se *StatusError
	if err != nil && opts.SRTP == SRTPOptional && ctx.Err() == nil && errors.As(err, &se) && (se.Code == 488 || se.Code == 606) {
		a.log.Info("sip: SRTP offer refused; dialling again with plain RTP", "target", target, "status", se.Code)
		opts.SRTP = SRTPOff
		return a.dialURI(ctx, target, opts)
	}
	return leg, err
}

func (a *Agent) dialURI(ctx context.Context, target string, opts DialOptions) (_ *Leg, err error) {
	uri, err := parseTarget(target)
	if err != nil {
		return nil, fmt.Errorf("sip: dial %q: %w", target, err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	remoteIP := netip.Addr{}
	if ap, err := netip.ParseAddrPort(opts.Destination); err == nil {
		remoteIP = ap.Addr().Unmap()
	} else if ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", uri.Host); err == nil && len(ips) > 0 {
		remoteIP = ips[0].Unmap()
	}
	ip := a.advertiseIP(remoteIP)

	l := &Leg{agent: a, inbound: false, user: uri.User, ip: ip, srtp: opts.SRTP, done: make(chan struct{}), final: make(chan struct{})}
	defer func() {
		if err != nil {
			l.reportDialog(presence.DialogTerminated) // the user's phone stopped ringing
		}
	}()
	ep, err := a.newEndpoint(a.log.With("target", target), func() { l.mediaTimeout() })
	if err != nil {
		return nil, fmt.Errorf("sip: dial: %w", err)
	}
	l.ep = ep
	codecs := a.cfg.Codecs
	pts := make([]uint8, len(codecs))
	for i, c := range codecs {
		pts[i] = c.PayloadType
	}
	dtmfPT := uint8(101)
	if a.cfg.NoTelephoneEvent {
		dtmfPT = 0
	}
	offerAddr := netip.AddrPortFrom(ip, ep.LocalAddr().Port())
	if opts.OfferRTPAddr.IsValid() {
		offerAddr = opts.OfferRTPAddr
	}
	offer := SessionSDP{Addr: offerAddr, Codecs: codecs, PTs: pts, DTMFPT: dtmfPT,
		Crypto: l.offerCryptoFor(nil), RTCPOnRTPPort: a.cfg.RTCPOnRTPPort}.Marshal()
	via := func(cfg media.StreamConfig) media.StreamConfig {
		if opts.RTPVia != nil {
			if !cfg.RemoteRTCP.IsValid() && cfg.Remote.IsValid() {
				cfg.RemoteRTCP = netip.AddrPortFrom(cfg.Remote.Addr(), cfg.Remote.Port()+1)
			}
			cfg.Remote = opts.RTPVia(cfg.Remote)
		}
		return cfg
	}

	transport := "UDP"
	if t, ok := uri.UriParams.Get("transport"); ok {
		transport = strings.ToUpper(t)
	}
	if strings.EqualFold(uri.Scheme, "sips") {
		transport = "TLS"
	}
	if opts.Transport != "" {
		transport = strings.ToUpper(opts.Transport)
	}
	switch transport {
	case "UDP", "TCP", "TLS", "WS", "WSS":
	default:
		_ = ep.Close()
		return nil, fmt.Errorf("sip: dial %s: unsupported transport %q", target, transport)
	}
	req := sip.NewRequest(sip.INVITE, uri)
	req.SetTransport(transport)
	for _, r := range opts.Route {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	if opts.Destination == "" && len(opts.Route) > 0 {
		opts.Destination = routeHost(opts.Route[0])
	}
	if opts.Destination != "" {
		req.SetDestination(opts.Destination)
	}
	fromUser := opts.FromUser
	if fromUser == "" {
		fromUser = "switchboard"
	}
	fromHost := opts.FromHost
	if fromHost == "" {
		fromHost = ip.String()
	}
	fromURI := sip.Uri{Scheme: "sip", User: fromUser, Host: fromHost}
	if opts.Private && !opts.Trusted {
		req.AppendHeader(newFrom("Anonymous", anonymousFrom))
	} else {
		req.AppendHeader(newFrom(escapeDisplayName(opts.FromName), fromURI))
	}
	if opts.Trusted {
		id := Identity{Name: opts.FromName, URI: fromURI.String()}
		req.AppendHeader(sip.NewHeader("P-Asserted-Identity", id.String()))
		if opts.Private {
			req.AppendHeader(sip.NewHeader("Privacy", "id"))
		}
	}
	req.AppendHeader(a.contactFor(ip, transport))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sip.NewHeader("Allow", allowed))
	req.AppendHeader(sip.NewHeader("Supported", supported))
	if a.cfg.SessionExpires > 0 {
		req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(a.cfg.SessionExpires.Seconds()))))
	}
	for k, v := range opts.Headers {
		req.AppendHeader(sip.NewHeader(k, v))
	}
	req.SetBody(offer)
	l.callID = callIDOf(req) // filled once the client builds the request
	ringCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	dtx, err := a.duaFor(transport).WriteInvite(ringCtx, req)
	if err != nil {
		_ = ep.Close()
		return nil, fmt.Errorf("sip: dial %s: %w", target, err)
	}
	l.uac = dtx
	l.callID = callIDOf(dtx.InviteRequest)
	l.from = headerValue(dtx.InviteRequest.From())
	l.log = a.log.With("call_id", l.callID, "target", target)
	l.log.Info("sip: dialing")
	if opts.PresenceUser != "" {
		// The called phone's view: it is the recipient; its tag is the
		// To tag of its responses, ours is its remote tag.
		inv := dtx.InviteRequest
		l.trackPresence(opts.PresenceUser, presence.Recipient, inv.To().Address.String(), inv.From().Address.String(), "", tagOf(inv.From().Params))
		l.reportDialog(presence.DialogTrying)
	}

	early := false
	err = dtx.WaitAnswer(ringCtx, sipgo.AnswerOptions{
		Username: opts.Username, Password: opts.Password,
		OnResponse: func(res *sip.Response) error {
			if res.IsProvisional() {
				if opts.OnProgress != nil && res.StatusCode > 100 {
					opts.OnProgress(res.StatusCode)
				}
				if res.StatusCode > 100 {
					if tag := responseToTag(res); tag != "" {
						l.setPresenceTags(tag)
						l.reportDialog(presence.DialogEarly)
					} else {
						l.reportDialog(presence.DialogProceeding)
					}
				}
				if len(res.Body()) > 0 && !early {
					if cfg, err := l.answerConfig(res.Body()); err == nil {
						ep.Configure(via(cfg))
						ep.Start()
						early = true
					}
				}
			}
			return nil
		},
	})
	if err != nil {
		_ = ep.Close()
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			se := statusError(dr.Res.StatusCode, dr.Res.Reason)
			l.log.Info("sip: dial failed", "status", dr.Res.StatusCode, "reason", dr.Res.Reason)
			return nil, fmt.Errorf("sip: dial %s: %w", target, se)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("sip: dial %s: %w", target, ctx.Err())
		case ringCtx.Err() != nil:
			return nil, fmt.Errorf("sip: dial %s: ring timeout %s: %w", target, opts.Timeout, ErrNoAnswer)
		}
		return nil, fmt.Errorf("sip: dial %s: %w", target, err)
	}
	cfg, err := l.answerConfig(dtx.InviteResponse.Body())
	if err != nil {
		// RFC 3261 13.2.2.4: ACK the 2xx, then end the session.
		_ = dtx.Ack(ctx)
		_ = dtx.Bye(ctx)
		_ = ep.Close()
		return nil, fmt.Errorf("sip: dial %s: answer SDP: %w", target, err)
	}
	cfg.NATSource = sourceIPOf(dtx.InviteResponse.Source())
	ep.Configure(via(cfg))
	ep.Verify() // the peer answered the INVITE we chose to send
	ep.Start()
	l.to = headerValue(dtx.InviteResponse.To())
	if to := dtx.InviteResponse.To(); to != nil {
		l.remote = identityOf(to.DisplayName, to.Address)
	}
	l.regID = dtx.ID
	l.session = a.negotiateOutbound(dtx.InviteResponse)
	l.state = LegAnswered
	l.answeredAt.Store(time.Now().UnixNano())
	l.finalOnce.Do(func() { close(l.final) })
	// Findable before the ACK goes: the far end may send a re-INVITE,
	// MESSAGE or BYE the moment it has the ACK.
	if !a.register(a.uac, dtx.ID, l) {
		_ = dtx.Ack(ctx)
		_ = dtx.Bye(ctx)
		_ = ep.Close()
		return nil, ErrShutdown
	}
	if err := dtx.Ack(ctx); err != nil {
		a.unregister(a.uac, dtx.ID)
		_ = dtx.Bye(ctx)
		_ = ep.Close()
		return nil, fmt.Errorf("sip: dial %s: ACK: %w", target, err)
	}
	go func() {
		// The dialog's context ends when it is closed or terminated.
		select {
		case <-dtx.Context().Done():
			l.end(ErrRemoteHangup)
		case <-l.done:
		}
	}()
	l.armSessionTimer()
	l.setPresenceTags(responseToTag(dtx.InviteResponse))
	l.reportDialog(presence.DialogConfirmed)
	l.log.Info("sip: call connected", "codec", cfg.Codec.Name, "remote", cfg.Remote.String(), "srtp", srtpSuiteName(cfg))
	return l, nil
}

// routeTo is where requests to a registered contact go: over the
// connection the phone registered on, or to its NAT binding (a phone
// behind NAT cannot be reached any other way, and over TLS it may not
// listen at all). Once that connection is gone, "" and "" send them to
// the Contact itself with the transport it names, as a phone with a
// public address wants.
func (a *Agent) routeTo(b Binding) (destination, transport string) {
	destination, transport = b.Source.String(), b.Transport
	if reliable(transport) && !a.liveConnection(transport, destination) {
		a.log.Info("sip: registration's connection is closed; using its contact", "user", b.User,
			"contact", b.Contact, "transport", transport, "source", destination)
		return "", ""
	}
	return destination, transport
}

// reliable reports whether transport is connection-oriented.
func reliable(transport string) bool {
	switch strings.ToUpper(transport) {
	case "TCP", "TLS", "WS", "WSS":
		return true
	}
	return false
}

// newFrom is a From header for a new request we originate, with a fresh tag.
func newFrom(display string, addr sip.Uri) *sip.FromHeader {
	from := &sip.FromHeader{DisplayName: display, Address: addr, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	return from
}

// parseTarget parses a SIP/tel URI, or user@host as a sip: URI.
func parseTarget(target string) (sip.Uri, error) {
	if !strings.HasPrefix(target, "sip:") && !strings.HasPrefix(target, "sips:") && !strings.HasPrefix(target, "tel:") {
		target = "sip:" + target
	}
	var uri sip.Uri
	err := sip.ParseUri(target, &uri)
	return uri, err
}

// answerConfig reads an SDP answer to an offer whose a=crypto lines were
// offered (none for a plain RTP offer). An SRTP answer must pick one of
// them; a plain answer to an SRTP offer is refused when policy requires
// SRTP. It returns the crypto tag the answer chose.
func answerConfig(body []byte, offered []CryptoAttr, policy SRTPPolicy) (media.StreamConfig, int, error) {
	if len(body) == 0 {
		return media.StreamConfig{}, 0, fmt.Errorf("%w: empty answer", ErrBadSDP)
	}
	ans, err := ParseSDP(body)
	if err != nil {
		return media.StreamConfig{}, 0, err
	}
	codec, pt, err := ans.Choose()
	if err != nil {
		return media.StreamConfig{}, 0, ErrNoCodec
	}
	cfg := media.StreamConfig{Codec: codec, PayloadType: pt, DTMFPayloadType: ans.DTMFPayloadType,
		Remote: ans.Remote, Direction: ReverseDirection(ans.Direction), RTCPMux: ans.RTCPMux, RemoteRTCP: ans.RTCP,
		FramesPerPacket: ans.FramesPerPacket()}
	tag := 0
	switch {
	case len(ans.Crypto) > 0:
		if len(offered) == 0 {
			return media.StreamConfig{}, 0, fmt.Errorf("%w: SRTP answer to a plain RTP offer", ErrBadSDP)
		}
		if cfg.SRTP, tag, err = answerKeys(offered, ans.Crypto); err != nil {
			return media.StreamConfig{}, 0, err
		}
	case len(offered) > 0 && policy == SRTPRequired:
		return media.StreamConfig{}, 0, fmt.Errorf("%w: plain RTP answer to an SRTP offer", ErrSRTPRequired)
	}
	return cfg, tag, nil
}

// NewStatusError returns the error for a final response code and reason,
// matching the typed outcome (ErrBusy, ...) the code maps to. The
// framework rebuilds a status that crossed an actor boundary with it.
func NewStatusError(code int, reason string) *StatusError { return statusError(code, reason) }

// routeHost is the host:port a Route name-addr ("<sip:h:p;lr>") sends to
// (port 5060 when it has none), or "" when it does not parse.
func routeHost(route string) string {
	v := strings.TrimSpace(route)
	if i, j := strings.IndexByte(v, '<'), strings.IndexByte(v, '>'); i >= 0 && j > i {
		v = v[i+1 : j]
	}
	var u sip.Uri
	if err := sip.ParseUri(v, &u); err != nil || u.Host == "" {
		return ""
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
}
