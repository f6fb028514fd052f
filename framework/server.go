package framework

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
)

// Config configures a Server. Every zero value has a sane default.
type Config struct {
	// SIPAddr is where SIP listens, UDP and TCP. Default "0.0.0.0:5060".
	SIPAddr string
	// TLSAddr is where SIP over TLS listens; empty disables TLS. Without
	// TLSCertFile/TLSKeyFile a self-signed certificate is generated.
	TLSAddr                 string
	TLSCertFile, TLSKeyFile string
	// HTTPAddr is where the web endpoints listen (and SIP over WebSocket,
	// RFC 7118, on path /sip). Default ":8080"; "-"
	// disables HTTP.
	HTTPAddr string
	// RTPPortMin and RTPPortMax bound the RTP ports. Default 10000-20000.
	RTPPortMin, RTPPortMax int
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
	// ShutdownTimeout bounds how long shutdown waits for calls to end.
	// Default 10 s.
	ShutdownTimeout time.Duration
	// Logger receives all log lines; nil means slog.Default().
	Logger *slog.Logger
	// OnCallEnd, if set, receives every call's CDR (from the call actor; it
	// must not block for long).
	OnCallEnd func(CDR)
	// OnEvent, if set, receives every event of every call, in order per
	// call (from the call actor; it must not block).
	OnEvent func(Event)
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
	// Realm is the digest realm of the registrar (default "switchboard").
	Realm string
	// HTTPHandler, if set, serves every path on HTTPAddr that the built-in
	// routes (/healthz, /readyz, /metrics, /sip, /debug/pprof/ when
	// enabled) and Server.Handle do not — in place of the status page at
	// /. Server.Handle is the finer-grained way to add routes.
	HTTPHandler http.Handler
	// Pprof serves net/http/pprof's profiles under /debug/pprof/ on
	// HTTPAddr. Off by default: profiles reveal internals and cost CPU
	// while taken, so expose them only on a trusted network.
	Pprof bool
	// Overload is the admission control for new calls: above its limits
	// an INVITE gets 503 with Retry-After (see sip.OverloadOptions; by
	// default at most sip.DefaultMaxPendingInvites calls being set up).
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
	// TTS speaks Call.Say's text; nil means a media.TTS with its defaults
	// (espeak-ng from PATH, 32 MiB cache), shared by the server's calls.
	TTS *media.TTS
}

// Server accepts calls and runs a Handler for each, one actor per call.
type Server struct {
	cfg     Config
	handler Handler
	log     *slog.Logger
	system  *actor.ActorSystem
	root    *actor.RootContext
	agent   *sip.Agent
	ports   *media.PortPool
	httpSrv *http.Server
	httpLn  net.Listener
	mux     *http.ServeMux
	metrics *serverMetrics
	// shuttingDown is set as shutdown begins, before any listener closes:
	// /readyz answers 503 from then on.
	shuttingDown atomic.Bool

	confs conferences
	tts   *media.TTS

	mu    sync.Mutex
	calls map[*Call]*actor.PID
	boxes map[*Call]actor.Mailbox // call actors' mailboxes, for the depth gauge
	wg    sync.WaitGroup
	ready chan struct{}
	base  context.Context
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
	ports, err := media.NewPortPool(cfg.RTPPortMin, cfg.RTPPortMax)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, handler: h, log: log, ports: ports, calls: map[*Call]*actor.PID{}, boxes: map[*Call]actor.Mailbox{}, ready: make(chan struct{}), tts: cfg.TTS}
	s.metrics = newServerMetrics(s)
	if s.tts == nil {
		s.tts = &media.TTS{}
	}
	s.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(levelFilter{h: log.Handler(), min: slog.LevelWarn}).With("component", "actor")
	}))
	s.root = s.system.Root.WithGuardian(actor.NewOneForOneStrategy(0, time.Second, func(any) actor.Directive { return actor.StopDirective }))
	var registrar *sip.Registrar
	if cfg.Users != nil {
		realm := cfg.Realm
		if realm == "" {
			realm = "switchboard"
		}
		registrar = sip.NewRegistrar(cfg.Users, realm, log)
	}
	agent, err := sip.NewAgent(sip.Config{
		ListenAddr: cfg.SIPAddr, TLSAddr: cfg.TLSAddr, TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile, PublicIP: cfg.PublicIP, Ports: ports, Registrar: registrar, InviteAuth: cfg.InviteAuth, OnMessage: cfg.OnMessage, Trunks: cfg.Trunks,
		MediaTimeout: cfg.MediaTimeout, SessionExpires: cfg.SessionExpires, MinSessionExpires: cfg.MinSessionExpires, RTCPInterval: cfg.RTCPInterval, Logger: log, OnInvite: func(l *sip.Leg) { s.StartCall(l) },
		Observer: s.metrics, Overload: cfg.Overload,
	})
	if err != nil {
		return nil, err
	}
	s.agent = agent
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
		return err
	}
	if s.cfg.HTTPAddr != "-" {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			s.agent.Close()
			return fmt.Errorf("framework: http listen: %w", err)
		}
		s.httpLn = ln
		s.httpSrv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http server stopped", "error", err)
			}
		}()
		s.log.Info("http: listening", "addr", ln.Addr().String())
	}
	close(s.ready)
	<-ctx.Done()
	s.shutdown()
	return nil
}

func (s *Server) shutdown() {
	// Unready first, while every listener is still open: load balancers
	// and orchestrators see /readyz fail, and new INVITEs get 503, while
	// calls up are hung up cleanly.
	s.shuttingDown.Store(true)
	s.agent.Drain()
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
	s.confs.closeAll()
	if s.httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.httpSrv.Shutdown(sctx)
		cancel()
	}
	s.system.Shutdown()
	s.log.Info("shut down")
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
	leg, err := dialLeg(ctx, s.agent, target, opts)
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
	c := &Call{
		id: sig.ID(), user: sig.User(), from: sig.From(), to: sig.To(), trunk: trunkOf(sig), auth: authUserOf(sig),
		root: s.root, log: log, ctx: ctx, tts: s.tts,
		digits: make(chan media.DTMFEvent, 32), events: make(chan Event, 64),
	}
	ca := &callActor{srv: s, call: c, cancel: cancel, log: log, legs: map[string]*legRef{}, start: time.Now()}
	props := actor.PropsFromProducer(func() actor.Actor { return &safeActor{inner: ca, log: log} },
		actor.WithSupervisor(actor.NewOneForOneStrategy(0, time.Second, func(any) actor.Directive { return actor.StopDirective })))
	s.mu.Lock()
	s.wg.Add(1)
	s.calls[c] = nil
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
	go s.runFlow(c, h)
}

func (s *Server) runFlow(c *Call, h Handler) {
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("framework: call flow panicked: %v", r)
				c.log.Error("call flow panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		err = h.ServeCall(c.ctx, c)
	}()
	s.root.Send(c.pid, &controllerDone{err: err})
}

func (s *Server) callEnded(c *Call, cdr CDR) {
	c.log.Info("cdr", "user", cdr.User, "from", cdr.From, "cause", cdr.Cause,
		"answered", !cdr.Answer.IsZero(), "duration", cdr.Duration.Round(time.Millisecond).String(),
		"rtp_in", cdr.Media.PacketsIn, "rtp_out", cdr.Media.PacketsOut, "rtp_lost", cdr.Media.Lost,
		"jitter", cdr.Media.Jitter.Round(100*time.Microsecond).String())
	s.metrics.observeCDR(cdr)
	if s.cfg.OnCallEnd != nil {
		s.cfg.OnCallEnd(cdr)
	}
	s.mu.Lock()
	delete(s.boxes, c)
	if _, ok := s.calls[c]; ok {
		delete(s.calls, c)
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
		}
		fmt.Fprintf(w, "SIP over WebSocket: ws://%s/sip\nActive calls: %d\nCall sip:ivr@%s from a SIP softphone.\nHealth: /healthz, /readyz; metrics: /metrics\n",
			r.Host, s.ActiveCalls(), net.JoinHostPort(host, strconv.Itoa(int(sipAddr.Port()))))
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

// levelFilter drops records below min (protoactor logs chattily at Info).
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
