// Package sip is Switchboard's SIP user agent, built on emiago/sipgo. It
// turns INVITE dialogs into Legs — signaling state plus a media.Endpoint —
// and knows nothing of actors or call flows: it never decides what happens
// to a call, it only reports what the network did and carries out what it is
// told.
package sip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/internal/workpool"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/presence"
)

// Config configures an Agent. The zero value of every field but Ports is
// usable.
type Config struct {
	// ListenAddr is host:port for UDP and TCP. Empty means "0.0.0.0:5060";
	// port 0 picks a free port (tests).
	ListenAddr string
	// TLSAddr is host:port for SIP over TLS; empty disables TLS.
	TLSAddr string
	// TLSCertFile and TLSKeyFile are the PEM certificate and key for the
	// TLS listener; without them a self-signed development certificate is
	// used (its fingerprint is logged): kept in DataDir when that is set,
	// so phones that trust it keep trusting it across restarts, else made
	// afresh at each start. TLSConfig overrides all of them.
	TLSCertFile, TLSKeyFile string
	TLSConfig               *tls.Config
	// DataDir is where the agent keeps state across restarts (the
	// development TLS certificate, in DataDir/tls); empty keeps nothing.
	DataDir string
	// TLSHostnames are extra DNS names the development certificate must
	// name besides localhost and the host name (e.g. the name phones use).
	TLSHostnames []string
	// TLSRootCAs verifies the servers we connect to over TLS (trunks);
	// nil means the system roots.
	TLSRootCAs *x509.CertPool
	// PublicIP, when valid, is written into SDP and Contact instead of the
	// local address (a server behind 1:1 NAT).
	PublicIP netip.Addr
	// MediaIP is the address RTP sockets bind to; invalid means all
	// interfaces.
	MediaIP netip.Addr
	// Ports hands out RTP ports. Required.
	Ports *transport.PortPool
	// Codecs lists the audio codecs offered, in preference order; nil means
	// codec.Codecs().
	Codecs []codec.CodecSpec
	// NoTelephoneEvent leaves RFC 4733 out of offers and answers, so DTMF
	// travels in-band (as some PSTN gateways do; the harness uses it to
	// play one).
	NoTelephoneEvent bool
	// MediaTimeout hangs up answered calls that receive no RTP for this long
	// (hold excluded). Zero means 30 s; negative disables it.
	MediaTimeout time.Duration
	// SessionExpires is the session-timer interval (RFC 4028) we ask for
	// on calls we dial and use for callers that do not ask; zero means
	// 1800 s, negative disables session timers.
	SessionExpires time.Duration
	// MinSessionExpires is the smallest interval we accept (smaller ones
	// get 422); zero means 90 s, the RFC's floor.
	MinSessionExpires time.Duration
	// RTCPInterval is the nominal time between RTCP reports of each call
	// (zero: media.DefaultRTCPInterval, 5 s; negative: no reports).
	RTCPInterval time.Duration
	// RTCPOnRTPPort gives a call's RTP and RTCP one socket, on the RTP
	// port, and says so in our SDP with a=rtcp (RFC 3605): half the
	// descriptors and socket system calls per call. Off, RTCP has the
	// port above RTP (RFC 3550 section 11). A peer that ignores a=rtcp
	// loses nothing but its RTCP reports (see transport.UDPOptions).
	RTCPOnRTPPort bool
	// UserAgent is the User-Agent/Server header value.
	UserAgent string
	// Logger receives the agent's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Pacer drives the 20 ms send clock of every RTP endpoint; nil means
	// the agent starts its own (one goroutine per CPU) and stops it on
	// Close.
	Pacer *media.Pacer
	// Trunks are the carriers this agent dials through and accepts calls
	// from (see Trunk).
	Trunks []Trunk
	// Registrar, if set, accepts REGISTER and lets Dial reach registered
	// users by name; without one REGISTER is refused with 403.
	Registrar *Registrar
	// InviteAuth says which INVITEs must authenticate against the
	// Registrar's directory (default InviteAuthKnownUsers).
	InviteAuth InviteAuth
	// SRTP is the SRTP policy of inbound calls that come neither from a
	// trunk nor from a directory user with a policy of their own (see
	// SRTPPolicy); the zero value answers plain and SRTP offers in kind.
	SRTP SRTPPolicy
	// SRTPSuites are the SRTP crypto suites we offer (in this order) and
	// accept; empty means AES_CM_128_HMAC_SHA1_80 then AEAD_AES_128_GCM.
	SRTPSuites []transport.SRTPSuite
	// OnMessage receives MESSAGE requests sent outside a call that are not
	// for a registered user (those are relayed to the user's phones); its
	// return value is the response status. Nil answers 404.
	OnMessage func(PagerMessage) int
	// Presence, if set, is kept up to date with registrations (through the
	// Registrar) and with the dialogs of directory users' phones, and
	// SUBSCRIBE for the presence (RFC 3856) and dialog (RFC 4235) event
	// packages is served from it. Without it SUBSCRIBE gets 489.
	Presence *presence.Store
	// Subscriptions bounds SUBSCRIBE: lifetimes and how many.
	Subscriptions SubscriptionLimits
	// CallLimits bound the calls one source address may hold and start
	// (see CallLimits; trunks are exempt).
	CallLimits CallLimits
	// AckTimeout is how long an answered inbound call waits for the ACK
	// of its 200 before it is ended and its RTP port released (the peer
	// never confirmed the call: a spoofed or abandoned INVITE). Zero
	// means 4 s — the 200 and its first three retransmissions over UDP;
	// negative waits the RFC 3261 64*T1 (32 s). Under overload ACKs
	// queue behind the flood on both sides: when the agent refused an
	// INVITE for overload in the AckTimeout before the 200 went, or
	// since, the call waits the full 64*T1 for its ACK.
	AckTimeout time.Duration
	// UnverifiedRTP is how many RTP packets a call may send to the
	// address in the peer's SDP before the peer has proven it wants them
	// (its first RTP packet from that address, or the ACK of our 2xx; see
	// media.EndpointOptions.UnverifiedBudget). Zero means 4; negative
	// turns the check off. (Latching is strict either way: only the SDP
	// address's IP, or the NAT rule of media.StreamConfig.NATSource.)
	UnverifiedRTP int
	// Conns bounds the TCP, TLS and WebSocket connections peers open:
	// handshake, first-request, message and idle deadlines and per-IP and
	// total caps (see ConnLimits; the zero value has sane defaults).
	Conns ConnLimits
	// WebSocketOrigins lists the browser origins (e.g.
	// "https://phone.example.com") allowed to open SIP over WebSocket
	// besides the server's own (an Origin whose host equals the request's
	// Host). "*" allows any. Requests without Origin (non-browser clients)
	// are always allowed.
	WebSocketOrigins []string
	// OnInvite is called for each new inbound call, from the INVITE's own
	// goroutine; it must hand the leg off and return quickly. Nil rejects
	// every call with 480.
	OnInvite func(*Leg)
	// WebRTC, if set, answers INVITEs whose SDP offers WebRTC media (a
	// browser SIP library over WebSocket): it returns the call's media.
	// Without it such INVITEs get 488.
	WebRTC func(offer []byte) (*WebRTCMedia, error)
	// OnReplace is called instead of OnInvite for an INVITE with a
	// Replaces header (RFC 3891) naming one of our dialogs: the new leg
	// is to take the place of old (attended transfer, call pickup).
	// Without it such INVITEs get 501.
	OnReplace func(newLeg, old *Leg)
	// Observer, if set, is told about every SIP message, refused INVITE
	// and answered call (for metrics; see Observer).
	Observer Observer
	// Overload is the admission control for new calls (503 + Retry-After
	// above its limits).
	Overload OverloadOptions
}

// Agent is a SIP user agent: it listens for requests, creates inbound legs
// and dials outbound ones.
type Agent struct {
	cfg Config
	log *slog.Logger
	ua  *sipgo.UserAgent
	srv *sipgo.Server
	// clients and duas hold one sipgo client (and dialog UA) per
	// transport, so each request's Via sent-by and Contact name the port
	// of the transport it travels over (see transports.go).
	clients map[string]*sipgo.Client
	duas    map[string]*sipgo.DialogUA

	// work runs the per-call goroutines of the UDP read loop's fast
	// path (an INVITE's handling, the 200's send and wait for its ACK, a
	// BYE's ending) on workers that keep their grown stacks.
	work *workpool.Pool

	mu         sync.Mutex
	uas        map[string]*Leg // by dialog id, UAS side
	uac        map[string]*Leg // by dialog id, UAC side
	listeners  []func() error
	udpAddr    netip.AddrPort
	udpKey     string // the UDP listener's local address as sipgo's pool names it
	tcpAddr    netip.AddrPort
	tlsAddr    netip.AddrPort
	tlsConf    *tls.Config
	wsListener *chanListener
	closed     bool
	ownPacer   bool
	stopTrunks context.CancelFunc
	trunksDone chan struct{} // closed when trunk registrations have ended (unregistered)
	ready      chan struct{}
	legsWG     sync.WaitGroup

	regState     map[string]*regState // guarded by mu
	trunkDNS     *dnsCache
	malformedLog logThrottle

	subs         subscriptions
	pubs         publications
	stopPresence context.CancelFunc
	presenceDone chan struct{}
	admission    *admission
	admitLog     logThrottle
	localIPs     map[netip.Addr]bool // addresses of this host, for fromUs
	routes       routeCache          // advertiseIP's answers per peer
	txs          *txMemory           // transactions finished early, for their retransmissions (txmemory.go)
	invites      inviteTable         // initial INVITEs over UDP: our server transactions (invite_tx.go)
	parser       *sip.Parser         // for the requests the read loop takes whole (invite_tx.go)
	guard        *connGuard
	identityLog  logThrottle // unreadable P-Asserted-Identity

	pendingInvites  atomic.Int64 // inbound INVITE transactions in progress (overload.go)
	setups          inviteRate   // INVITE transactions finished per second, for the scaled pending limit
	draining        atomic.Bool  // Drain called: new INVITEs get 503
	overloadLog     logThrottle
	shed            *shedder     // early shedding in the read loop (shed.go)
	readDelay       readDelay    // the SIP UDP socket's queueing delay (readdelay.go)
	fastAcks        atomic.Int64 // ACKs of our 200s taken in the read loop (ack_fast.go)
	fastByes        atomic.Int64 // BYEs of inbound calls taken in the read loop (bye_fast.go)
	readLoopInvites atomic.Int64 // initial INVITEs over UDP taken in the read loop (invite_tx.go)
	lastRefused     atomic.Int64 // when an INVITE last got 503 for overload (UnixNano; overload.go)
}

// init raises sipgo's UDP size check for the process: it refuses any
// message over 1,300 bytes, and an SRTP offer with every codec, two
// crypto suites and digest credentials is larger. RFC 3261 18.1.1 would
// move such a request to TCP; like Asterisk and FreeSWITCH we send it
// over UDP (IP fragments it) up to 4,000 bytes rather than fail the call.
// It is a package-level setting of sipgo's, so it is set at package
// initialisation, before any goroutine can read it (set in NewAgent, it
// raced with a sipgo client or server already running in the process).
func init() { sip.UDPMTUSize = max(sip.UDPMTUSize, 4200) }

// NewAgent creates an agent; it listens once ListenAndServe is called.
func NewAgent(cfg Config) (*Agent, error) {
	if cfg.Ports == nil {
		return nil, errors.New("sip: Config.Ports is required")
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "0.0.0.0:5060"
	}
	defaultCodecs := cfg.Codecs == nil
	if defaultCodecs {
		cfg.Codecs = codec.Codecs()
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = 30 * time.Second
	}
	if cfg.SessionExpires == 0 {
		cfg.SessionExpires = 1800 * time.Second
	}
	if cfg.MinSessionExpires == 0 {
		cfg.MinSessionExpires = 90 * time.Second
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 4 * time.Second
	}
	if cfg.UnverifiedRTP == 0 {
		cfg.UnverifiedRTP = 4
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Switchboard"
	}
	cfg.Subscriptions = cfg.Subscriptions.withDefaults()
	if cfg.Registrar != nil && cfg.Registrar.Presence == nil {
		cfg.Registrar.Presence = cfg.Presence
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := codec.OpusAvailable(); defaultCodecs && err != nil {
		log.Info("sip: opus is not offered", "reason", err)
	}
	a := &Agent{cfg: cfg, log: log, work: workpool.New(workpool.BlockingMax, 2*time.Second), uas: map[string]*Leg{}, uac: map[string]*Leg{}, ready: make(chan struct{}),
		trunkDNS: newDNSCache(time.Minute), regState: map[string]*regState{}, malformedLog: logThrottle{interval: time.Second, burst: 10},
		admission: newAdmission(cfg.CallLimits, cfg.Ports.Size()), admitLog: logThrottle{interval: time.Second, burst: 5}, localIPs: hostIPs(),
		identityLog: logThrottle{interval: time.Minute, burst: 5}, overloadLog: logThrottle{interval: time.Second, burst: 5},
		txs: newTxMemory(64 * sip.T1), shed: newShedder(), parser: sip.NewParser()}
	a.guard = newConnGuard(cfg.Conns, log)
	a.guard.inUse = a.connInUse
	a.guard.tcpAddr = func() netip.AddrPort { return a.tcpAddr }
	a.guard.tlsAddr = func() netip.AddrPort { return a.tlsAddr }
	if a.cfg.Pacer == nil {
		a.cfg.Pacer = media.NewPacer(0)
		a.ownPacer = true
	}
	return a, nil
}

// Ready is closed once the agent listens; Addr is valid from then on.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Registrar returns the configured registrar, or nil.
func (a *Agent) Registrar() *Registrar { return a.cfg.Registrar }

// Addr returns the UDP address the agent listens on.
func (a *Agent) Addr() netip.AddrPort { return a.udpAddr }

// TCPAddr returns the TCP address the agent listens on.
func (a *Agent) TCPAddr() netip.AddrPort { return a.tcpAddr }

// ListenAndServe binds UDP and TCP on ListenAddr and serves until ctx ends;
// then it hangs up every live leg and closes its sockets.
func (a *Agent) ListenAndServe(ctx context.Context) error {
	if err := a.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	a.Close()
	return nil
}

// Start binds the sockets and serves in the background (for clients such
// as the test harness that need an agent without blocking).
func (a *Agent) Start() error {
	if err := a.listen(); err != nil {
		return err
	}
	a.shed.latency.start()
	close(a.ready)
	rctx, cancel := context.WithCancel(context.Background())
	a.stopTrunks = cancel
	a.trunksDone = make(chan struct{})
	go func() {
		defer close(a.trunksDone)
		a.registerTrunks(rctx)
	}()
	if a.cfg.Presence != nil {
		pctx, stop := context.WithCancel(context.Background())
		a.stopPresence, a.presenceDone = stop, make(chan struct{})
		go func() {
			defer close(a.presenceDone)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); a.watchPresence(pctx) }()
			a.housekeeping(pctx)
			wg.Wait()
		}()
	}
	return nil
}

// housekeeping runs once a second while presence is served: expired
// registrations take their users offline, expired subscriptions end.
func (a *Agent) housekeeping(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if r := a.cfg.Registrar; r != nil {
				r.syncPresence()
			}
			a.subs.expire(now, a.cfg.Presence)
			a.pubs.expire(now, a.cfg.Presence)
		}
	}
}

func (a *Agent) listen() error {
	host, portStr, err := net.SplitHostPort(a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("sip: listen address %q: %w", a.cfg.ListenAddr, err)
	}
	wantPort, _ := strconv.Atoi(portStr)
	udp, tcp, err := listenUDPAndTCP(host, wantPort)
	if err != nil {
		return err
	}
	a.udpAddr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	a.udpKey = udp.LocalAddr().String()
	if uc, ok := udp.(*net.UDPConn); ok {
		// A burst of requests (an overload, a trunk's failover) must
		// wait in the socket rather than be dropped while the read loop
		// waits for a CPU: each drop costs a retransmission 500 ms later.
		if got := raiseReadBuffer(uc, sipUDPReadBuffer); got < sipUDPReadBuffer {
			a.log.Warn("sip: small UDP receive buffer; request bursts may be dropped (raise net.core.rmem_max)", "bytes", got, "wanted", sipUDPReadBuffer)
		}
		udp = withReadDelay(uc, &a.readDelay)
	}
	a.tcpAddr = tcp.Addr().(*net.TCPAddr).AddrPort()
	if obs := a.cfg.Observer; obs != nil {
		udp = &countingPacketConn{PacketConn: udp, obs: obs}
	}

	var tlsL net.Listener
	if a.cfg.TLSAddr != "" {
		conf, err := a.serverTLSConfig()
		if err != nil {
			udp.Close()
			tcp.Close()
			return err
		}
		raw, err := net.Listen("tcp", a.cfg.TLSAddr)
		if err != nil {
			udp.Close()
			tcp.Close()
			return fmt.Errorf("sip: listen tls: %w", err)
		}
		a.tlsConf = conf
		a.tlsAddr = raw.Addr().(*net.TCPAddr).AddrPort()
		tlsL = newGuardListener(raw, a.guard, streamTLS, conf)
		if obs := a.cfg.Observer; obs != nil {
			tlsL = &countingListener{Listener: tlsL, obs: obs}
		}
	}
	wsl := newChanListener(tcp.Addr())
	tcpL := newGuardListener(tcp, a.guard, streamTCP, nil)
	// sipgo's transport and transaction layers log through a handler that
	// rate-limits warnings and errors and cuts what they quote.
	sipgoLog := slog.New(NewLimitedHandler(a.log.Handler(), 10))

	advertise := a.advertiseIP(netip.Addr{})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(a.cfg.UserAgent),
		sipgo.WithUserAgentHostname(advertise.String()),
		sipgo.WithUserAgenTLSConfig(&tls.Config{RootCAs: a.cfg.TLSRootCAs, MinVersion: tls.VersionTLS12}),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(a.countingReadFilter(a.lintFilter(udp))), sip.WithTransportLayerLogger(sipgoLog)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipgoLog)),
	)
	if err != nil {
		udp.Close()
		tcp.Close()
		return fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog))
	if err != nil {
		return err
	}
	a.ua, a.srv = ua, srv
	if err := a.newClients(ua, advertise); err != nil {
		return err
	}
	srv.OnInvite(a.onInvite)
	srv.OnAck(a.onAck)
	srv.OnBye(a.onBye)
	srv.OnCancel(a.onCancel)
	srv.OnOptions(a.onOptions)
	srv.OnRegister(a.onRegister)
	srv.OnInfo(a.onInfo)
	srv.OnMessage(a.onMessage)
	srv.OnRefer(a.onRefer)
	srv.OnUpdate(a.onUpdate)
	srv.OnNotify(a.onNotify)
	srv.OnSubscribe(a.onSubscribe)
	srv.OnPublish(a.onPublish)
	srv.OnNoRoute(a.onNoRoute)
	go func() { _ = srv.ServeUDP(udp) }()
	var tcpServe, wsServe net.Listener = tcpL, wsl
	if obs := a.cfg.Observer; obs != nil {
		// Outside the connection guard: count what is really written.
		// WebSocket frame payloads are written apart from their headers.
		tcpServe = &countingListener{Listener: tcpL, obs: obs}
		wsServe = &countingListener{Listener: wsl, obs: obs}
	}
	go func() { _ = srv.ServeTCP(tcpServe) }()
	go func() { _ = srv.ServeWS(wsServe) }()
	a.listeners = append(a.listeners, udp.Close, tcpL.Close, wsl.Close)
	if tlsL != nil {
		go func() { _ = srv.ServeTLS(tlsL) }()
		a.listeners = append(a.listeners, tlsL.Close)
	}
	a.mu.Lock()
	a.wsListener = wsl
	a.mu.Unlock()
	// Requests over UDP leave from the listening socket, which sipgo
	// knows only once ServeUDP has run: wait for it (bounded), so a
	// request sent right after Start does not find it missing.
	for i := 0; !a.liveConnection("UDP", a.udpKey); i++ {
		if i == 500 {
			a.log.Warn("sip: UDP listener not registered with the transport layer after 500 ms; requests over UDP may fail", "addr", a.udpKey)
			break
		}
		time.Sleep(time.Millisecond)
	}
	tlsAt := "off"
	if a.tlsAddr.IsValid() {
		tlsAt = a.tlsAddr.String()
	}
	lim := a.guard.limits
	a.log.Info("sip: listening", "udp", a.udpAddr.String(), "tcp", a.tcpAddr.String(), "tls", tlsAt, "advertise", advertise.String(),
		"max_conns_per_ip", lim.MaxPerIP, "max_conns", lim.MaxTotal, "fd_limit", descriptorLimit())
	return nil
}

// sipUDPReadBuffer is the receive buffer asked for on the SIP UDP socket:
// ~3,500 INVITEs (a datagram's kernel footprint is ~1–2 KB), a quarter
// of a second of 6,000 calls/s with every message counted.
const sipUDPReadBuffer = 8 << 20

// listenUDPAndTCP binds UDP and TCP on one port. With port 0 the kernel
// picks the UDP port, which TCP may already use (an outgoing connection's
// local port): then it tries another, a few times.
func listenUDPAndTCP(host string, port int) (net.PacketConn, net.Listener, error) {
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("sip: listen udp: %w", err)
		}
		p := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if port != 0 || attempt == 9 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("sip: listen tcp: %w", err)
		}
	}
}

// Close hangs up every live leg (BYE, or 480/CANCEL before answer), waits
// for them, and closes the listeners and the transport layer.
func (a *Agent) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	if a.stopTrunks != nil {
		a.stopTrunks()
	}
	var legs []*Leg
	for _, l := range a.uas {
		legs = append(legs, l)
	}
	for _, l := range a.uac {
		legs = append(legs, l)
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.Hangup(ctx)
		}()
	}
	wg.Wait()
	waitCh := make(chan struct{})
	go func() { a.legsWG.Wait(); close(waitCh) }()
	select {
	case <-waitCh:
	case <-ctx.Done():
		a.log.Warn("sip: legs still open at shutdown")
	}
	if a.stopPresence != nil {
		// Watchers hear that we are going (NOTIFY terminated) while the
		// transport still works.
		a.stopPresence()
		<-a.presenceDone
		a.subs.closeAll(2*time.Second, a.cfg.Presence)
	}
	defer a.work.Close()
	defer a.txs.close()
	defer a.invites.closeAll()
	defer a.shed.latency.close()
	if a.trunksDone != nil {
		// Unregistering needs the transport: let it finish (it is bounded).
		select {
		case <-a.trunksDone:
		case <-time.After(5 * time.Second):
			a.log.Warn("sip: trunk unregistration did not finish")
		}
	}
	for _, c := range a.listeners {
		_ = c()
	}
	if a.ua != nil {
		_ = a.ua.Close()
	}
	if a.ownPacer {
		a.cfg.Pacer.Close()
	}
}

// advertiseIP returns the address to put into SDP and Contact for a peer at
// remote: the public IP if configured, the listen IP if specific, else the
// local address the kernel would route to remote from.
func (a *Agent) advertiseIP(remote netip.Addr) netip.Addr {
	if a.cfg.PublicIP.IsValid() {
		return a.cfg.PublicIP
	}
	if a.udpAddr.IsValid() && !a.udpAddr.Addr().IsUnspecified() {
		return a.udpAddr.Addr()
	}
	if remote.IsValid() {
		if ip, ok := a.routes.get(remote, time.Now()); ok {
			return ip
		}
		// Connecting a UDP socket sends nothing; it only asks the routing table.
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9))); err == nil {
			ip := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
			c.Close()
			a.routes.put(remote, ip, time.Now())
			return ip
		}
	}
	return firstInterfaceIP()
}

// routeCache remembers, for a while, which local address the kernel
// routes each peer from (advertiseIP on a server listening on all
// interfaces), so a call from a known peer costs no socket, connect and
// close to find out. Bounded: it is emptied when full.
type routeCache struct {
	mu sync.Mutex
	m  map[netip.Addr]routeEntry
}

type routeEntry struct {
	local netip.Addr
	at    time.Time
}

// routeTTL is how long a route is trusted; routeCacheMax bounds the cache.
const (
	routeTTL      = 30 * time.Second
	routeCacheMax = 4096
)

func (r *routeCache) get(remote netip.Addr, now time.Time) (netip.Addr, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[remote]
	if !ok || now.Sub(e.at) >= routeTTL {
		return netip.Addr{}, false
	}
	return e.local, true
}

func (r *routeCache) put(remote, local netip.Addr, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= routeCacheMax {
		r.m = make(map[netip.Addr]routeEntry)
	}
	r.m[remote] = routeEntry{local: local, at: now}
}

func firstInterfaceIP() netip.Addr {
	ifaces, err := net.Interfaces()
	if err == nil {
		for _, ifc := range ifaces {
			if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
				continue
			}
			addrs, _ := ifc.Addrs()
			for _, ad := range addrs {
				if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr().Is4() {
					return p.Addr()
				}
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

func (a *Agent) mediaBindIP() netip.Addr {
	if a.cfg.MediaIP.IsValid() {
		return a.cfg.MediaIP
	}
	if a.udpAddr.IsValid() && !a.udpAddr.Addr().IsUnspecified() {
		return a.udpAddr.Addr()
	}
	return netip.IPv4Unspecified()
}

// newEndpoint allocates a leg's RTP endpoint; log is the leg's logger
// (with its call_id when known), used for the endpoint's own lines.
func (a *Agent) newEndpoint(log *slog.Logger, onTimeout func()) (*media.Endpoint, error) {
	var mt time.Duration
	if a.cfg.MediaTimeout > 0 {
		mt = a.cfg.MediaTimeout
	}
	return media.NewEndpoint(a.cfg.Ports, a.mediaBindIP(), media.EndpointOptions{
		Logger: log, MediaTimeout: mt, OnMediaTimeout: onTimeout, Pacer: a.cfg.Pacer, RTCPInterval: a.cfg.RTCPInterval,
		UnverifiedBudget: max(a.cfg.UnverifiedRTP, 0), RTCPOnRTPPort: a.cfg.RTCPOnRTPPort,
	})
}

// contactFor is our Contact for a dialog or registration over transport,
// at ip: the listening port of that transport, so requests the peer sends
// later (or over a new connection, once ours is gone) reach the right
// listener. WebSocket peers cannot connect to us; their requests come
// back over the connection they opened, so no port.
func (a *Agent) contactFor(ip netip.Addr, transport string) *sip.ContactHeader {
	c := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "switchboard", Host: ip.String(), Port: a.listenPort(transport)}}
	if t := strings.ToLower(transport); t != "" && t != "udp" {
		c.Address.UriParams = sip.NewParams()
		c.Address.UriParams.Add("transport", t)
	}
	return c
}

func (a *Agent) register(m map[string]*Leg, id string, l *Leg) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	m[id] = l
	a.legsWG.Add(1)
	return true
}

func (a *Agent) unregister(m map[string]*Leg, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := m[id]; ok {
		delete(m, id)
		a.legsWG.Done()
	}
}

func (a *Agent) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sip: respond failed", "code", code, "error", err)
	}
}

func sourceIP(req *sip.Request) netip.Addr { return sourceIPOf(req.Source()) }

// sourceIPOf returns the IP of a "host:port" message source, or the zero
// Addr.
func sourceIPOf(hostport string) netip.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// hostIPs returns the addresses of this host's interfaces.
func hostIPs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, ad := range addrs {
		if p, err := netip.ParsePrefix(ad.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}

func (a *Agent) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if a.draining.Load() && !req.To().Params.Has("tag") {
		// Out of dialog while draining: a dispatcher's health probe (or a
		// phone's keep-alive) learns this node takes no new calls.
		a.respond(req, tx, 503, "Service Unavailable (shutting down)")
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	if a.cfg.Presence != nil {
		res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
	}
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sip: respond OPTIONS failed", "error", err)
	}
}

func (a *Agent) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	if a.cfg.Registrar == nil {
		a.log.Info("sip: REGISTER refused: no registrar configured", "source", req.Source())
		a.respond(req, tx, 403, "Forbidden (registration not enabled)")
		return
	}
	a.cfg.Registrar.serveRegister(req, tx)
}

// allowed is the Allow header value of every response that carries one.
// supported lists the option tags we implement (Supported header).
const supported = "timer"

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, MESSAGE, REFER, NOTIFY, UPDATE, SUBSCRIBE, PUBLISH"

func (a *Agent) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	a.log.Info("sip: method not supported", "method", string(req.Method), "source", req.Source())
	res := sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	_ = tx.Respond(res)
}

func (a *Agent) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	// A CANCEL that matched a pending INVITE was answered by the transaction
	// layer (200, then 487 to the INVITE); this one matched nothing.
	a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
}

func (a *Agent) findLeg(req *sip.Request) *Leg {
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		a.mu.Lock()
		l := a.uas[id]
		a.mu.Unlock()
		if l != nil {
			return l
		}
	}
	if id, err := sip.DialogIDFromRequestUAC(req); err == nil {
		a.mu.Lock()
		l := a.uac[id]
		a.mu.Unlock()
		if l != nil {
			return l
		}
	}
	return nil
}

func (a *Agent) onAck(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		return // ACK for a non-2xx was absorbed by its transaction; stray ones are dropped
	}
	l.readAckAnswer(req)
	if l.uas == nil {
		return
	}
	if err := l.uas.ReadAck(req, tx); err != nil {
		l.log.Debug("sip: ACK not matched", "error", err)
		return
	}
	l.acked()
	// The peer got our 2xx: it wants the call's RTP.
	l.ep.Verify()
}

func (a *Agent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if a.answerRetransmission(req, tx) {
		return // the BYE of a call that ended: the same answer again
	}
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		a.finishNonInvite(req, tx, 481)
		return
	}
	var err error
	if l.uas != nil {
		if l.sent2xx() && req.CSeq() != nil && req.CSeq().SeqNo >= l.uas.InviteRequest.CSeq().SeqNo {
			// A BYE in the dialog of our 2xx, no ACK seen: the ACK is
			// lost or queued behind this BYE (or, after a 180 with our
			// tag, the BYE crossed the 2xx). We answered the call when
			// the 2xx went, and the CDR says so.
			l.answeredByBye()
		}
		err = l.uas.ReadBye(req, tx)
	} else {
		err = l.uac.ReadBye(req, tx)
	}
	if err != nil {
		l.log.Info("sip: BYE rejected", "error", err)
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		a.finishNonInvite(req, tx, 481)
		return
	}
	a.finishNonInvite(req, tx, 200)
	l.log.Info("sip: remote hangup (BYE)")
	l.end(ErrRemoteHangup)
}
