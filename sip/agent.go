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
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media"
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
	// TLS listener; without them a self-signed one is generated (for
	// development; its fingerprint is logged). TLSConfig overrides both.
	TLSCertFile, TLSKeyFile string
	TLSConfig               *tls.Config
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
	Ports *media.PortPool
	// Codecs lists the audio codecs offered, in preference order; nil means
	// media.Codecs().
	Codecs []media.CodecSpec
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
	// OnMessage receives MESSAGE requests sent outside a call that are not
	// for a registered user (those are relayed to the user's phones); its
	// return value is the response status. Nil answers 404.
	OnMessage func(PagerMessage) int
	// OnInvite is called for each new inbound call, from the INVITE's own
	// goroutine; it must hand the leg off and return quickly. Nil rejects
	// every call with 480.
	OnInvite func(*Leg)
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
	cfg    Config
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	dua    *sipgo.DialogUA

	mu         sync.Mutex
	uas        map[string]*Leg // by dialog id, UAS side
	uac        map[string]*Leg // by dialog id, UAC side
	listeners  []func() error
	udpAddr    netip.AddrPort
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

	pendingInvites atomic.Int64 // inbound INVITE transactions in progress (overload.go)
	draining       atomic.Bool  // Drain called: new INVITEs get 503
	overloadLog    logThrottle
}

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
		cfg.Codecs = media.Codecs()
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
	if cfg.UserAgent == "" {
		cfg.UserAgent = "Switchboard"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := media.OpusAvailable(); defaultCodecs && err != nil {
		log.Info("sip: opus is not offered", "reason", err)
	}
	a := &Agent{cfg: cfg, log: log, uas: map[string]*Leg{}, uac: map[string]*Leg{}, ready: make(chan struct{}),
		trunkDNS: newDNSCache(time.Minute), regState: map[string]*regState{}, malformedLog: logThrottle{interval: time.Second, burst: 10},
		overloadLog: logThrottle{interval: time.Second, burst: 5}}
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
	close(a.ready)
	rctx, cancel := context.WithCancel(context.Background())
	a.stopTrunks = cancel
	a.trunksDone = make(chan struct{})
	go func() {
		defer close(a.trunksDone)
		a.registerTrunks(rctx)
	}()
	return nil
}

func (a *Agent) listen() error {
	host, portStr, err := net.SplitHostPort(a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("sip: listen address %q: %w", a.cfg.ListenAddr, err)
	}
	port, _ := strconv.Atoi(portStr)
	udp, err := net.ListenPacket("udp", a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("sip: listen udp: %w", err)
	}
	a.udpAddr = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	if port == 0 {
		port = int(a.udpAddr.Port())
	}
	tcp, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		udp.Close()
		return fmt.Errorf("sip: listen tcp: %w", err)
	}
	a.tcpAddr = tcp.Addr().(*net.TCPAddr).AddrPort()
	if obs := a.cfg.Observer; obs != nil {
		udp = &countingPacketConn{PacketConn: udp, obs: obs}
		tcp = &countingListener{Listener: tcp, obs: obs}
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
		tlsL = tls.NewListener(raw, conf)
		if obs := a.cfg.Observer; obs != nil {
			tlsL = &countingListener{Listener: tlsL, obs: obs}
		}
	}
	wsl := newChanListener(tcp.Addr())

	advertise := a.advertiseIP(netip.Addr{})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent(a.cfg.UserAgent),
		sipgo.WithUserAgentHostname(advertise.String()),
		sipgo.WithUserAgenTLSConfig(&tls.Config{RootCAs: a.cfg.TLSRootCAs, MinVersion: tls.VersionTLS12}),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(a.countingReadFilter(a.lintFilter(udp)))),
	)
	if err != nil {
		udp.Close()
		tcp.Close()
		return fmt.Errorf("sip: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(a.log))
	if err != nil {
		return err
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(advertise.String()), sipgo.WithClientPort(port), sipgo.WithClientLogger(a.log))
	if err != nil {
		return err
	}
	a.ua, a.srv, a.client = ua, srv, client
	a.dua = &sipgo.DialogUA{
		Client:         client,
		ContactHDR:     sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "switchboard", Host: advertise.String(), Port: port}},
		RewriteContact: true,
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
	srv.OnNoRoute(a.onNoRoute)
	go func() { _ = srv.ServeUDP(udp) }()
	go func() { _ = srv.ServeTCP(tcp) }()
	var wsServe net.Listener = wsl
	if obs := a.cfg.Observer; obs != nil {
		wsServe = &countingListener{Listener: wsl, obs: obs} // frame payloads are written apart from their headers
	}
	go func() { _ = srv.ServeWS(wsServe) }()
	a.listeners = append(a.listeners, udp.Close, tcp.Close, wsl.Close)
	if tlsL != nil {
		go func() { _ = srv.ServeTLS(tlsL) }()
		a.listeners = append(a.listeners, tlsL.Close)
	}
	a.mu.Lock()
	a.wsListener = wsl
	a.mu.Unlock()
	a.log.Info("sip: listening", "udp", a.udpAddr.String(), "tcp", a.tcpAddr.String(), "tls", a.tlsAddr.String(), "advertise", advertise.String())
	return nil
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
		// Connecting a UDP socket sends nothing; it only asks the routing table.
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9))); err == nil {
			ip := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
			c.Close()
			return ip
		}
	}
	return firstInterfaceIP()
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

func (a *Agent) newEndpoint(onTimeout func()) (*media.Endpoint, error) {
	var mt time.Duration
	if a.cfg.MediaTimeout > 0 {
		mt = a.cfg.MediaTimeout
	}
	return media.NewEndpoint(a.cfg.Ports, a.mediaBindIP(), media.EndpointOptions{
		Logger: a.log, MediaTimeout: mt, OnMediaTimeout: onTimeout, Pacer: a.cfg.Pacer, RTCPInterval: a.cfg.RTCPInterval,
	})
}

func (a *Agent) contactFor(ip netip.Addr, transport string) *sip.ContactHeader {
	port := int(a.udpAddr.Port())
	switch strings.ToUpper(transport) {
	case "TCP":
		port = int(a.tcpAddr.Port())
	case "TLS":
		port = int(a.tlsAddr.Port())
	case "WS", "WSS":
		port = 0 // requests come back over the client's connection
	}
	c := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "switchboard", Host: ip.String(), Port: port}}
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

func sourceIP(req *sip.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (a *Agent) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", allowed))
	res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
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

const allowed = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, MESSAGE, REFER, NOTIFY, UPDATE"

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
	}
}

func (a *Agent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	var err error
	if l.uas != nil {
		err = l.uas.ReadBye(req, tx)
	} else {
		err = l.uac.ReadBye(req, tx)
	}
	if err != nil {
		l.log.Info("sip: BYE rejected", "error", err)
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	l.log.Info("sip: remote hangup (BYE)")
	l.end(ErrRemoteHangup)
}
