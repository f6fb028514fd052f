package framework

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/internal/workpool"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
)

// Config configures a Server. Every zero value has a sane default.
type Config struct {
	// SIPAddr is where SIP listens, UDP and TCP. Default "0.0.0.0:5060".
	SIPAddr string
	// TLSAddr is where SIP over TLS listens; empty disables TLS. Without
	// TLSCertFile/TLSKeyFile a self-signed development certificate is used,
	// kept in DataDir (see sip.DevCertificate) and served at
	// GET /tls/cert.pem for phones to trust.
	TLSAddr                 string
	TLSCertFile, TLSKeyFile string
	// DataDir keeps state across restarts (the development certificate);
	// empty keeps none (a new certificate at every start).
	DataDir string
	// TLSHostnames are DNS names phones use to reach the server, added to
	// the development certificate (localhost and the host name always are).
	TLSHostnames []string
	// HTTPAddr is where the web endpoints listen (and SIP over WebSocket,
	// RFC 7118, on path /sip). Default ":8080"; "-"
	// disables HTTP.
	HTTPAddr string
	// RTPPortMin and RTPPortMax bound the RTP ports. Default 10000-20000.
	RTPPortMin, RTPPortMax int
	// RTPKeepSockets is how many ended calls' RTP/RTCP socket pairs stay
	// bound while their ports rest, to be handed to later calls instead
	// of binding new sockets (transport.PortPool.KeepSockets): it saves four
	// socket system calls and two closes per call, for up to this many
	// extra open descriptors; pairs unused for 10 s after their rest are
	// closed. Zero keeps none.
	RTPKeepSockets int
	// RTPPortRest is how long a released RTP port pair rests before
	// another call gets it (transport.PortPool.RestTime), so a new call
	// never hears the old call's late packets; zero means 2 s. It bounds
	// the call rate a port range carries: calls of D seconds at R/s hold
	// about R × (D + rest) pairs.
	RTPPortRest time.Duration
	// PublicIP, when set, is advertised in SDP and Contact (server behind
	// 1:1 NAT).
	PublicIP netip.Addr
	// MediaTimeout hangs up calls that receive no RTP for this long.
	// Default 30 s; negative disables it.
	MediaTimeout time.Duration
	// SessionExpires and MinSessionExpires set the SIP session timers
	// (RFC 4028); zero means 1800 s and 90 s, negative SessionExpires
	// disables them.
	SessionExpires, MinSessionExpires time.Duration
	// RTCPInterval is the nominal time between RTCP reports (default 5 s).
	RTCPInterval time.Duration
	// RTCPPortPair gives each SIP call's RTCP a socket of its own on the
	// port above RTP (RFC 3550 section 11), as most servers do. By
	// default RTCP shares the RTP port's socket, which our SDP names
	// with a=rtcp (RFC 3605, which phones, trunks and SBCs read): one
	// descriptor and half the socket system calls per call, so twice
	// the concurrent calls under the same descriptor limit. A peer that
	// ignores a=rtcp loses nothing but its RTCP reports to us (RTT and
	// the far end's loss in the CDR); set this for such peers.
	RTCPPortPair bool
	// ShutdownTimeout bounds how long shutdown waits for calls to end.
	// Default 10 s.
	ShutdownTimeout time.Duration
	// DrainTimeout is how long shutdown lets the calls that are up end
	// on their own before it hangs them up (BYE). Meanwhile new INVITEs
	// get 503 with Retry-After and OPTIONS 503 (so a dispatcher in front,
	// such as Kamailio's, takes the node out) and /readyz is unready.
	// Zero hangs up at once. Server.EndDrain cuts a drain short.
	DrainTimeout time.Duration
	// Logger receives all log lines; nil means slog.Default().
	Logger *slog.Logger
	// OnCallEnd, if set, receives every call's CDR (from the call actor; it
	// must not block for long).
	OnCallEnd func(CDR)
	// OnEvent, if set, receives every event of every call, in order, from
	// one goroutine of its own reading the server-wide stream (so it may
	// lag the calls, and it cannot slow them down; a panic in it is
	// logged and the stream goes on).
	//
	// Deprecated: use Server.Subscribe, which can resume and tells a
	// slow reader what it missed.
	OnEvent func(Event)
	// EventReplay is how many of each call's latest events are kept for
	// subscribers that resume or fall behind (default DefaultEventReplay).
	EventReplay int
	// ServerEventReplay is the same for the server-wide stream (default
	// DefaultServerEventReplay).
	ServerEventReplay int
	// Users, if set, enables the registrar: these accounts may REGISTER
	// (digest auth) and Dial reaches them by name.
	Users *sip.Directory
	// OnMessage receives chat messages sent outside any call (SIP MESSAGE)
	// that are not for a registered user; registered users' messages are
	// relayed to their phones. It returns the SIP status to answer (200).
	OnMessage func(sip.PagerMessage) int
	// InviteAuth says which calls must authenticate against Users (default:
	// a caller whose From names a user must have that user's password).
	InviteAuth sip.InviteAuth
	// Trunks are the carriers calls can go out through (DialOptions.Trunk)
	// and come in from (Call.Trunk).
	Trunks []sip.Trunk
	// CallLimits bound the calls one source address may hold and start
	// (sip.CallLimits: guests 10 at once and 5/s, users 100; trunks exempt).
	CallLimits sip.CallLimits
	// AckTimeout ends an answered call whose 200 is not ACKed within it,
	// releasing its RTP port (default 4 s; negative: RFC 3261's 32 s).
	AckTimeout time.Duration
	// UnverifiedRTP is how many RTP packets a call sends to an address the
	// peer has not proven (default 4; negative disables the check).
	UnverifiedRTP int
	// Domains are the host names phones use for this server in their From
	// (besides its IP addresses, "localhost" and Realm): callers claiming
	// one of them must authenticate (sip.Registrar.Domains).
	Domains []string
	// Realm is the digest realm of the registrar (default "switchboard").
	Realm string
	// HTTPHandler, if set, serves every path on HTTPAddr that the built-in
	// routes (/healthz, /readyz, /metrics, /sip, /debug/pprof/ when
	// enabled) and Server.Handle do not — in place of the status page at
	// /. Server.Handle is the finer-grained way to add routes.
	HTTPHandler http.Handler
	// Browsers, if set, serves browser legs and the softphone page.
	Browsers *BrowserConfig
	// Subscriptions bounds SIP SUBSCRIBE (presence and dialog event
	// packages): lifetimes and how many; the zero value has defaults.
	Subscriptions sip.SubscriptionLimits
	// OnPresence, if set, receives every presence change (a user's status
	// or note, or one of their dialogs) in order, synchronously on the
	// goroutine that caused it; it must not block and must not call the
	// presence store's setters (a panic is recovered and logged).
	// Server.Presence().Subscribe is the buffered alternative.
	OnPresence func(PresenceChange)
	// SIPConns bounds the TCP, TLS and WebSocket connections peers open
	// (deadlines, per-IP and total caps; see sip.ConnLimits, whose zero
	// value has sane defaults). IdleTimeout also closes idle HTTP
	// keep-alive connections.
	SIPConns sip.ConnLimits
	// WebSocketOrigins lists the browser origins allowed to open SIP over
	// WebSocket on /sip besides the server's own ("*" allows any);
	// requests without an Origin header (SIP phones) are always allowed.
	WebSocketOrigins []string
	// Ringback is the country whose ringing tone callers hear while Dial
	// puts them through ("us" when empty; "gb", "de", "fr", "jp", ...: see
	// Ringback). NewServer rejects an unknown one.
	Ringback string
	// Pprof serves net/http/pprof's profiles under /debug/pprof/ on
	// HTTPAddr. Off by default: profiles reveal internals and cost CPU
	// while taken, so expose them only on a trusted network.
	Pprof bool
	// Overload is the admission control for new calls: above its limits
	// an INVITE gets 503 with Retry-After (see sip.OverloadOptions; by
	// default at most the calls of half a second at the current call
	// rate being set up, and never fewer than sip.DefaultMaxPendingInvites).
	Overload sip.OverloadOptions
	// MemoryLimit, when positive, is applied with debug.SetMemoryLimit
	// when the server starts: a soft limit on the Go heap, past which the
	// garbage collector works harder instead of letting memory grow. Zero
	// leaves the runtime's setting (the GOMEMLIMIT environment variable,
	// else no limit). It is process-wide.
	MemoryLimit int64
	// GCPercent, when non-zero, is applied with debug.SetGCPercent when
	// the server starts (GOGC; negative turns the proportional collector
	// off, so that only MemoryLimit triggers collections). Zero leaves
	// the runtime's setting (GOGC, else 100). It is process-wide.
	GCPercent int
	// TTS speaks Call.Say's text; nil means an audio.TTS with its defaults
	// (espeak-ng from PATH, 32 MiB cache), shared by the server's calls.
	TTS *audio.TTS
}

// Server accepts calls and runs a Handler for each, one actor per call.
type Server struct {
	cfg     Config
	handler Handler
	log     *slog.Logger
	system  *actor.ActorSystem
	// dispatch runs the call, leg and room actors' mailboxes on
	// long-lived workers (dispatcher.go); tasks runs call flows and the
	// legs' blocking operations (answer, hang up) the same way: each
	// goes deep enough that a fresh goroutine's stack grows and is
	// copied two or three times.
	dispatch actorDispatcher
	tasks    *workpool.Pool
	root     *actor.RootContext
	agent    *sip.Agent
	ports    *transport.PortPool
	httpSrv  *http.Server
	httpLn   net.Listener
	mux      *http.ServeMux
	metrics  *serverMetrics
	// shuttingDown is set as shutdown begins, before any listener closes:
	// /readyz answers 503 from then on.
	shuttingDown atomic.Bool
	endDrain     chan struct{} // closed by EndDrain
	endDrainOnce sync.Once

	rooms  roomRegistry
	legReg legRegistry
	// inbox routes replies to the goroutines waiting for them; objs keeps
	// the live objects (sources, sinks, transfers) messages name by ID.
	inbox    *replyInbox
	objs     objects
	browsers *bridge.Bridge
	tokens   *bridge.Tokens
	// remote reads sessions of other nodes (SetRemoteSessions).
	remote   atomic.Pointer[remoteSessions]
	tts      *audio.TTS
	presence *presence.Store

	// events is the server-wide stream: every session's events, each
	// with its own Seq and a ServerSeq here.
	events    *EventLog
	onEventWG sync.WaitGroup

	mu    sync.Mutex
	calls map[*Call]*actor.PID
	byID  map[string]*Call
	boxes map[*Call]actor.Mailbox // call actors' mailboxes, for the depth gauge
	// dialers are the transport families Dial asks before SIP.
	dialers []Dialer
	wg      sync.WaitGroup
	ready   chan struct{}
	base    context.Context
}

// NewServer creates a server that runs h for every incoming call.
func NewServer(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("framework: nil handler")
	}
	if cfg.SIPAddr == "" {
		cfg.SIPAddr = "0.0.0.0:5060"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	if cfg.RTPPortMin == 0 && cfg.RTPPortMax == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 10000, 20000
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Per-call loggers (call_id, the leg's source) format their
	// attributes only if they ever write a line.
	log = slog.New(deferAttrs(log.Handler()))
	if _, err := Ringback(cfg.Ringback); err != nil {
		return nil, wrapVerb("config", err)
	}
	ports, err := transport.NewPortPool(cfg.RTPPortMin, cfg.RTPPortMax)
	if err != nil {
		return nil, err
	}
	ports.KeepSockets = max(cfg.RTPKeepSockets, 0)
	ports.RestTime = max(cfg.RTPPortRest, 0)
	s := &Server{cfg: cfg, handler: h, log: log, ports: ports, calls: map[*Call]*actor.PID{}, byID: map[string]*Call{}, boxes: map[*Call]actor.Mailbox{}, ready: make(chan struct{}), endDrain: make(chan struct{}), tts: cfg.TTS}
	s.metrics = newServerMetrics(s)
	if s.tts == nil {
		s.tts = &audio.TTS{}
	}
	s.events = NewEventLog("", cfg.ServerEventReplay)
	s.events.server = true
	s.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(LevelHandler(log.Handler(), slog.LevelWarn)).With("component", "actor")
	}))
	// Mailbox runs never block: a few hundred workers absorb the runs
	// that pile up while the CPU is saturated. Flows block for their
	// whole call: past the cap they get plain goroutines.
	s.dispatch = actorDispatcher{Pool: workpool.New(128*runtime.GOMAXPROCS(0), 2*time.Second), throughput: 300}
	s.tasks = workpool.New(workpool.BlockingMax, 2*time.Second)
	s.root = s.system.Root.WithGuardian(actor.NewOneForOneStrategy(0, time.Second, func(any) actor.Directive { return actor.StopDirective }))
	s.inbox = newReplyInbox(s.system)
	s.system.EventStream.Subscribe(func(evt any) {
		if dl, ok := evt.(*actor.DeadLetterEvent); ok {
			s.undeliverable(actor.UnwrapEnvelopeMessage(dl.Message))
		}
	})
	s.presence = presence.New(presence.Options{OnChange: s.presenceChanged, Logger: log})
	var registrar *sip.Registrar
	if cfg.Users != nil {
		s.presence.Add(cfg.Users.Names()...)
		realm := cfg.Realm
		if realm == "" {
			realm = "switchboard"
		}
		registrar = sip.NewRegistrar(cfg.Users, realm, log)
		registrar.Domains = cfg.Domains
	}
	var webrtc func([]byte) (*sip.WebRTCMedia, error)
	if cfg.Browsers != nil {
		webrtc = s.answerWebRTC // browser SIP libraries over /sip
	}
	agent, err := sip.NewAgent(sip.Config{WebRTC: webrtc,
		ListenAddr: cfg.SIPAddr, TLSAddr: cfg.TLSAddr, TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile, DataDir: cfg.DataDir, TLSHostnames: cfg.TLSHostnames, PublicIP: cfg.PublicIP, Ports: ports, Registrar: registrar, InviteAuth: cfg.InviteAuth, OnMessage: cfg.OnMessage, Trunks: cfg.Trunks,
		MediaTimeout: cfg.MediaTimeout, SessionExpires: cfg.SessionExpires, MinSessionExpires: cfg.MinSessionExpires, RTCPInterval: cfg.RTCPInterval, RTCPOnRTPPort: !cfg.RTCPPortPair, Logger: log, Presence: s.presence, Subscriptions: cfg.Subscriptions,
		CallLimits: cfg.CallLimits, AckTimeout: cfg.AckTimeout, UnverifiedRTP: cfg.UnverifiedRTP, OnInvite: func(l *sip.Leg) { s.StartCall(l) }, OnReplace: s.onReplaceInvite,
		Conns: cfg.SIPConns, WebSocketOrigins: cfg.WebSocketOrigins,
		Observer: s.metrics, Overload: cfg.Overload,
	})
	if err != nil {
		return nil, err
	}
	s.agent = agent
	if cfg.Browsers != nil {
		if err := s.newBridge(cfg.Browsers); err != nil {
			agent.Close()
			return nil, err
		}
	}
	s.mux = s.newMux()
	return s, nil
}

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// TLSAddr returns the SIP over TLS address (invalid when TLS is off).
func (s *Server) TLSAddr() netip.AddrPort { return s.agent.TLSAddr() }

// SIPAddr returns the UDP address SIP listens on (valid after Ready).
func (s *Server) SIPAddr() netip.AddrPort { return s.agent.Addr() }

// HTTPAddr returns the address HTTP listens on (valid after Ready), or ""
// when HTTP is disabled.
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Agent returns the SIP agent (for dialing out and for tests).
func (s *Server) Agent() *sip.Agent { return s.agent }

// ActiveCalls returns how many calls are up.
func (s *Server) ActiveCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// ListenAndServe listens for SIP and HTTP and serves until ctx is
// cancelled. Then it hangs up every call (BYE), waits for the calls to end
// (up to ShutdownTimeout), and closes every socket.
func (s *Server) ListenAndServe(ctx context.Context) error {
	s.base = context.WithoutCancel(ctx)
	s.applyMemorySettings()
	if err := s.agent.Start(); err != nil {
		s.agent.Close() // stops the agent's pacer
		s.system.Shutdown()
		s.dispatch.Close()
		s.tasks.Close()
		return err
	}
	if s.cfg.HTTPAddr != "-" {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			s.agent.Close()
			return wrapVerb("http listen", err)
		}
		// The SIP agent's per-IP and total connection caps and accept
		// back-off cover HTTP connections too.
		ln = s.agent.GuardListener(ln)
		s.httpLn = ln
		idle := s.cfg.SIPConns.IdleTimeout
		if idle <= 0 {
			idle = 120 * time.Second
		}
		// Idle keep-alive connections go like idle SIP ones; net/http's
		// own lines (accept errors when out of descriptors, TLS probes)
		// are rate-limited like the SIP transports'.
		s.httpSrv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle,
			ErrorLog: slog.NewLogLogger(sip.NewLimitedHandler(s.log.Handler(), 10), slog.LevelWarn)}
		go func() {
			if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "error", err)
			}
		}()
		s.log.Info("http: listening", "addr", ln.Addr().String())
	}
	if s.cfg.OnEvent != nil {
		s.runOnEvent() // from Seq 0: calls that came in already are replayed
	}
	go s.trimMemory(ctx)
	close(s.ready)
	<-ctx.Done()
	s.shutdown()
	return nil
}

// drain waits, up to Config.DrainTimeout or EndDrain, for the calls
// that are up to end on their own (new ones are refused meanwhile).
func (s *Server) drain() {
	d := s.cfg.DrainTimeout
	if d <= 0 || s.ActiveCalls() == 0 {
		return
	}
	s.log.Info("draining: new calls refused, waiting for the calls up to end", "active_calls", s.ActiveCalls(), "drain_timeout", d)
	limit := time.NewTimer(d)
	defer limit.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for s.ActiveCalls() > 0 {
		select {
		case <-limit.C:
			s.log.Info("drain timeout: hanging up the calls still up", "active_calls", s.ActiveCalls())
			return
		case <-s.endDrain:
			s.log.Info("drain cut short: hanging up the calls still up", "active_calls", s.ActiveCalls())
			return
		case <-tick.C:
		}
	}
	s.log.Info("drained: every call ended on its own")
}

// EndDrain ends a drain (Config.DrainTimeout) now: the calls still up
// are hung up. A second SIGTERM to `switchboard serve` calls it.
func (s *Server) EndDrain() { s.endDrainOnce.Do(func() { close(s.endDrain) }) }

func (s *Server) shutdown() {
	// Unready first, while every listener is still open: load balancers
	// and orchestrators see /readyz fail, and new INVITEs get 503, while
	// calls up are hung up cleanly.
	s.shuttingDown.Store(true)
	s.agent.Drain()
	s.drain()
	s.log.Info("shutting down", "active_calls", s.ActiveCalls())
	s.mu.Lock()
	for _, pid := range s.calls {
		s.root.Send(pid, &shutdownReq{})
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("calls still up after shutdown timeout", "active_calls", s.ActiveCalls())
	}
	s.agent.Close()
	s.ports.Close() // the sockets it keeps for reuse
	if s.browsers != nil {
		_ = s.browsers.Close()
	}
	s.rooms.closeAll(s)
	s.events.Close()
	drained := make(chan struct{})
	go func() { s.onEventWG.Wait(); close(drained) }()
	select {
	case <-drained: // OnEvent has seen every event
	case <-time.After(2 * time.Second):
		s.log.Warn("Config.OnEvent still busy after shutdown; not waiting for it")
	}
	if s.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.httpSrv.Shutdown(sctx)
		cancel()
	}
	s.system.Shutdown()
	s.dispatch.Close()
	s.tasks.Close()
	s.log.Info("shut down")
}

// presenceChanged puts a presence change on the server-wide event stream
// (Seq: the presence store's own gap-free number) and hands it to
// Config.OnPresence.
func (s *Server) presenceChanged(c PresenceChange) {
	p := c.Presence
	s.events.Append(Event{Seq: c.Seq, Time: c.Time, Type: EventPresence,
		Data: PresenceData{User: p.User, Status: p.Status.String(), Note: p.Note}})
	if s.browsers != nil {
		s.browsers.Broadcast(presenceMessage(p))
	}
	if s.cfg.OnPresence != nil {
		s.cfg.OnPresence(c)
	}
}

// Subscribe returns a subscription to the server-wide event stream: every
// event of every session (calls now, rooms too), in the order they
// happened, each keeping its session's Seq and numbered in this stream by
// ServerSeq. from is a ServerSeq (0: as far back as the replay ring
// reaches; FromNow: new events only); resuming from the last ServerSeq
// seen replays every later event exactly once. It ends with ctx, Close, or
// the server's shutdown.
func (s *Server) Subscribe(ctx context.Context, from uint64) *Subscription {
	return s.events.Subscribe(ctx, from)
}

// runOnEvent feeds the deprecated Config.OnEvent from the server-wide
// stream in a goroutine of its own, until shutdown has drained it.
func (s *Server) runOnEvent() {
	sub := s.events.Subscribe(context.Background(), 0)
	s.onEventWG.Add(1)
	go func() {
		defer s.onEventWG.Done()
		defer sub.Close()
		for {
			ev, err := sub.Next(context.Background())
			if err != nil {
				return
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						s.log.Error("Config.OnEvent panicked", "call_id", ev.CallID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					}
				}()
				s.cfg.OnEvent(ev)
			}()
		}
	}()
}

// StartCall creates a call for an incoming leg: a call actor, a leg actor
// under it, and the handler in its own goroutine. Transport packages call
// it through the server's wiring; it is exported for custom transports.
func (s *Server) StartCall(sig Signaling) { s.startCall(sig, s.handler) }

// Originate places an outbound call — to a registered user's name or a SIP
// URI — and, once it is answered, runs h on it as on any call (the dialled
// party is the call's first leg). It returns when the call is answered and
// the flow started, or with the dial's error (ErrBusy, ErrNoAnswer, ...).
// Use it for click-to-call, reminders and call-backs.
func (s *Server) Originate(ctx context.Context, target string, opts DialOptions, h Handler) error {
	leg, err := s.dialLeg(ctx, target, opts)
	if err != nil {
		return fmt.Errorf("framework: originate %s: %w", target, err)
	}
	s.startCall(leg, h)
	return nil
}

func (s *Server) startCall(sig Signaling, h Handler) {
	base := s.base
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithCancelCause(base)
	log := s.log.With("call_id", sig.ID())
	caller, auth := callerOf(sig), authUserOf(sig)
	if caller.Name == "" && auth != "" && s.cfg.Users != nil {
		if acc, ok := s.cfg.Users.Lookup(auth); ok {
			caller.Name = acc.DisplayName
		}
	}
	c := &Call{
		id: sig.ID(), user: sig.User(), from: sig.From(), to: sig.To(), trunk: trunkOf(sig), source: sourceOf(sig), hdr: headersOf(sig), auth: auth, caller: caller,
		srv: s, root: s.root, log: log, ctx: ctx, tts: s.tts, start: time.Now(),
		stream: NewEventLog(sig.ID(), s.cfg.EventReplay),
	}
	flowCtx, flowDone := context.WithCancel(context.Background())
	c.flowCtx = flowCtx
	ca := &callActor{srv: s, call: c, cancel: cancel, log: log, legs: map[string]*legRef{}, start: c.start}
	props := actor.PropsFromProducer(func() actor.Actor { return &safeActor{inner: ca, log: log} }, actor.WithDispatcher(s.dispatch),
		actor.WithSupervisor(actor.NewOneForOneStrategy(0, time.Second, func(any) actor.Directive { return actor.StopDirective })))
	s.mu.Lock()
	s.wg.Add(1)
	s.calls[c] = nil
	s.byID[c.id] = c
	s.mu.Unlock()
	ca.initial = sig
	props.Configure(actor.WithMailbox(func() actor.Mailbox {
		mb := actor.Unbounded()()
		s.mu.Lock()
		s.boxes[c] = mb
		s.mu.Unlock()
		return mb
	}))
	c.pid = s.root.Spawn(props)
	s.metrics.callStarted(isInbound(sig))
	s.mu.Lock()
	if _, ok := s.calls[c]; ok {
		s.calls[c] = c.pid
	}
	s.mu.Unlock()
	s.tasks.Go(func() { s.runFlow(c, h, flowDone) })
}

// runFlow runs the call flow in its own goroutine. A panic in it is
// recovered and ends this call only (CDR cause "panic in call flow").
func (s *Server) runFlow(c *Call, h Handler, flowDone context.CancelFunc) {
	defer flowDone()
	var err error
	panicked := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				panicked = true
				err = flowPanicked(c, r)
			}
		}()
		err = h.ServeCall(c.ctx, c)
	}()
	done := &controllerDone{Panicked: panicked}
	if err != nil {
		done.Err = err.Error()
	}
	if errors.Is(err, ErrHangup) {
		done.Err = "" // the call ended: nothing to report
	}
	s.root.Send(c.pid, done)
}

func (s *Server) callEnded(c *Call, cdr CDR) {
	if c.log.Enabled(context.Background(), slog.LevelInfo) {
		// Checked first: the arguments (strings, boxed numbers) cost
		// allocations on every call even when the line is not written.
		c.log.Info("cdr", "user", cdr.User, "from", cdr.From, "cause", cdr.Cause,
			"answered", !cdr.Answer.IsZero(), "duration", cdr.Duration.Round(time.Millisecond).String(),
			"rtp_in", cdr.Media.PacketsIn, "rtp_out", cdr.Media.PacketsOut, "rtp_lost", cdr.Media.Lost,
			"jitter", cdr.Media.Jitter.Round(100*time.Microsecond).String())
	}
	s.metrics.observeCDR(cdr)
	if s.cfg.OnCallEnd != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					c.log.Error("Config.OnCallEnd panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				}
			}()
			s.cfg.OnCallEnd(cdr)
		}()
	}
	s.mu.Lock()
	delete(s.boxes, c)
	if _, ok := s.calls[c]; ok {
		delete(s.calls, c)
		if s.byID[c.id] == c {
			delete(s.byID, c.id)
		}
		s.wg.Done()
	}
	s.mu.Unlock()
}

// statusPage is the plain-text page at / (without Config.HTTPHandler).
func (s *Server) statusPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		sipAddr := s.SIPAddr()
		host := sipAddr.Addr().String()
		if sipAddr.Addr().IsUnspecified() {
			// Listening on every interface: name the one this page was
			// reached on, which the softphone can reach too.
			host = r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
		}
		fmt.Fprintf(w, "Switchboard is running.\nSIP: %s (UDP and TCP)\n", sipAddr)
		if t := s.agent.TLSAddr(); t.IsValid() {
			fmt.Fprintf(w, "SIP over TLS: %s\n", t)
			if c := s.agent.TLSCertificate(); c != nil {
				sum := sha256.Sum256(c.Raw)
				fmt.Fprintf(w, "TLS certificate (trust it in your phone): http://%s/tls/cert.pem (SHA-256 %s)\n", r.Host, hex.EncodeToString(sum[:]))
			}
		}
		fmt.Fprintf(w, "SIP over WebSocket: ws://%s/sip\nActive calls: %d\nCall sip:ivr@%s from a SIP softphone.\nHealth: /healthz, /readyz; metrics: /metrics\n",
			r.Host, s.ActiveCalls(), net.JoinHostPort(host, strconv.Itoa(int(sipAddr.Port()))))
		if roster := s.presence.Roster(); len(roster) > 0 {
			fmt.Fprintln(w, "Presence:")
			for _, p := range roster {
				fmt.Fprintf(w, "  %-16s %-10s %s\n", p.User, p.Status, p.Note)
			}
		}
	})
}

// safeActor recovers a panic in an actor's Receive: the call is torn down
// cleanly instead of the actor being restarted with half its state.
type safeActor struct {
	inner actor.Actor
	log   *slog.Logger
}

func (s *safeActor) Receive(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("actor panicked; stopping it", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			ctx.Stop(ctx.Self())
		}
	}()
	s.inner.Receive(ctx)
}

// LevelHandler wraps h so that records below min are dropped: for
// libraries that log chattily at Info (protoactor's actor system and
// cluster get it at Warn).
func LevelHandler(h slog.Handler, min slog.Level) slog.Handler {
	return levelFilter{h: h, min: min}
}

// levelFilter is LevelHandler's handler.
type levelFilter struct {
	h   slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.h.Enabled(ctx, l)
}
func (f levelFilter) Handle(ctx context.Context, r slog.Record) error { return f.h.Handle(ctx, r) }
func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{h: f.h.WithAttrs(a), min: f.min}
}
func (f levelFilter) WithGroup(n string) slog.Handler {
	return levelFilter{h: f.h.WithGroup(n), min: f.min}
}

// sourceOf is where an inbound leg's signaling came from, if its
// transport knows (SIP: the INVITE's source IP).
func sourceOf(sig Signaling) netip.Addr {
	if s, ok := sig.(interface{ SignalingSource() netip.Addr }); ok {
		return s.SignalingSource()
	}
	return netip.Addr{}
}

func headersOf(sig Signaling) headerReader {
	if h, ok := sig.(headerReader); ok {
		return h
	}
	return nil
}

func trunkOf(sig Signaling) string {
	if t, ok := sig.(interface{ Trunk() string }); ok {
		return t.Trunk()
	}
	return ""
}

func authUserOf(sig Signaling) string {
	if a, ok := sig.(interface{ AuthUser() string }); ok {
		return a.AuthUser()
	}
	return ""
}

// Ports returns the server's RTP port pool.
func (s *Server) Ports() *transport.PortPool { return s.ports }

// LiveLegs returns how many legs are up, in calls and rooms.
func (s *Server) LiveLegs() int { return s.legReg.count() }

// Rooms returns the names of the open rooms.
func (s *Server) Rooms() []string { return s.rooms.names() }

// Call returns a handle on the live call with that ID (Call.ID), or nil
// once it has ended. Its verbs are messages to the call's actor, as for
// the handle its flow holds; use it to control a call from outside its
// flow (an HTTP API, another call's flow).
func (s *Server) Call(id string) *Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

// ask sends m to the actor pid and waits for its Reply, or ctx.
func (s *Server) ask(ctx context.Context, pid *actor.PID, m request) (*Reply, error) {
	w := s.inbox.wait(m)
	defer w.done()
	s.root.Send(pid, m)
	select {
	case r := <-w.ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// undeliverable cleans up after a message that reached no actor because
// its call or room had gone (protoactor's dead letters; it runs in the
// sender's goroutine and never blocks): a leg the message handed over is
// hung up and forgotten, the live objects it named are dropped, and a
// waiting requester is answered at once — a per-leg request or a move
// with errNotHere, so it looks for the leg's new holder, anything else
// with ErrHangup. (A message still queued when an actor stops is dropped
// by protoactor without a dead letter; the requester then waits for its
// ctx or the end of the call, as before.)
func (s *Server) undeliverable(msg any) {
	reply := error(ErrHangup)
	switch m := msg.(type) {
	case *dialResult:
		s.dropLeg(m.LegID)
	case *transferResult:
		s.dropLeg(m.LegID)
		s.objs.drop(m.TransferID)
	case *legReplace:
		s.dropLeg(m.LegID)
	case *moveIn:
		s.dropLeg(m.LegID)
	case *playReq:
		s.objs.drop(m.SourceID)
	case *listenReq:
		s.objs.drop(m.SinkID)
	case *tapReq:
		s.objs.drop(m.SinkID)
	case *legTransfer:
		s.objs.drop(m.TransferID)
	case *legCtl:
		s.objs.drop(m.SinkID)
		reply = errNotHere
	case *moveOut:
		reply = errNotHere
	}
	if r, ok := msg.(request); ok {
		replyTo(s.root, *r.replyAddr(), reply)
	}
}

// callPID returns the actor of the live call with that ID, or nil.
func (s *Server) callPID(id string) *actor.PID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.byID[id]; c != nil {
		return s.calls[c]
	}
	return nil
}

// SendMessage sends a chat message outside any call: to a registered
// user's phones (target is the user name) or to a SIP URI. from is the
// sender's user name shown to the recipient.
func (s *Server) SendMessage(ctx context.Context, target, from, text string) error {
	return s.agent.SendMessage(ctx, target, from, "", text)
}

func isInbound(sig Signaling) bool {
	if l, ok := sig.(interface{ Inbound() bool }); ok {
		return l.Inbound()
	}
	return true
}
