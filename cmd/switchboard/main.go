// Command switchboard runs the Switchboard server with the demo call flows.
//
//	switchboard [serve] [flags]
//	switchboard load [flags]   simulated callers against a SIP server (load -help)
//
// Routes: "echo" (echo test), "tone" (continuous 1 kHz tone), "ivr" (demo
// menu); every other number goes to the menu.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	sipgosip "github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/cluster"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "token":
		err = tokenCmd(args)
	case "load":
		err = load(args, os.Stdout, os.Stderr)
	case "help":
		fmt.Println("usage: switchboard [serve] [flags]   run the server (switchboard serve -h lists the flags)\n" +
			"       switchboard load [flags]      simulate callers against a SIP server (switchboard load -h)\n" +
			"       switchboard token --user NAME mint a token for the browser softphone (switchboard token -h)")
	default:
		err = fmt.Errorf("unknown command %q (known: serve, load, token)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	sipAddr := fs.String("sip-addr", "0.0.0.0:5060", "SIP listen address (UDP and TCP)")
	tlsAddr := fs.String("tls-addr", "0.0.0.0:5061", `SIP over TLS listen address ("-" disables)`)
	tlsCert := fs.String("tls-cert", "", "PEM certificate for SIP over TLS (default: a generated self-signed one, for development)")
	tlsKey := fs.String("tls-key", "", "PEM private key for --tls-cert")
	dataDir := fs.String("data-dir", defaultDataDir(), `directory for state kept across restarts (the development TLS certificate); "-" keeps none`)
	tlsNames := fs.String("tls-hostnames", "", "comma-separated DNS names phones use for this server, added to the development certificate")
	httpAddr := fs.String("http-addr", ":8080", `HTTP listen address ("-" disables)`)
	rtpPorts := fs.String("rtp-ports", "10000-20000", "RTP port range")
	portRest := fs.Duration("rtp-port-rest", 2*time.Second, "how long a released RTP port pair rests before another call gets it (calls of D s at R/s hold about R×(D+rest) pairs of --rtp-ports)")
	rtcpPair := fs.Bool("rtcp-port-pair", false, "give each call's RTCP its own socket on the RTP port + 1 instead of sharing the RTP port (named in SDP with a=rtcp, RFC 3605); for peers that ignore a=rtcp")
	keepSockets := fs.Int("rtp-keep-sockets", 8192, "ended calls' RTP socket pairs kept bound for reuse while their ports rest (saves socket/bind/close per call; 0: none)")
	publicIP := fs.String("public-ip", "", "IP address to advertise in SDP and Contact (behind 1:1 NAT)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	usersFile := fs.String("users", "", "TOML file of SIP accounts ([[users]] name, password) that may register")
	guestCalls := fs.Int("guest-calls", 0, "unauthenticated calls one source address may hold at once (0: 10; -1: no limit; raise it to load-test from one host)")
	guestRate := fs.Float64("guest-rate", 0, "new unauthenticated calls per second one source address may start (0: 5; -1: no limit)")
	maxConnsPerIP := fs.Int("max-conns-per-ip", 0, "open SIP TCP/TLS/WebSocket and HTTP connections allowed from one IP address (0: 256)")
	wsOrigins := fs.String("ws-origins", "", `comma-separated browser origins allowed to use SIP over WebSocket (/sip) and the browser protocol (/ws) besides the server's own ("*": any)`)
	trunksFile := fs.String("trunks", "", "TOML file of SIP trunks ([[trunks]] name, host, username, password, caller_id, dids, register)")
	iceAddr := fs.String("webrtc-addr", "0.0.0.0:20001", `UDP address of every browser call's media (one port for all; "-" disables browsers)`)
	ringback := fs.String("ringback", "us", "country of the ringing tone callers hear while a call is put through: "+strings.Join(framework.RingbackCountries(), ", "))
	pprofOn := fs.Bool("pprof", false, "serve Go profiles at /debug/pprof/ on the HTTP port (trusted networks only)")
	memLimit := fs.String("memory-limit", "", `soft limit on Go heap memory, e.g. 512MiB or 2GiB (default: GOMEMLIMIT, else none)`)
	gogc := fs.Int("gogc", 0, "GC target percentage (GOGC); 0 keeps $GOGC, else 400; -1 collects only at --memory-limit")
	maxPending := fs.Int("max-pending-invites", 0, "calls being set up at once; beyond it new INVITEs get 503 + Retry-After (0: the calls of --setup-budget at the current call rate, at least 200; -1: no limit)")
	setupBudget := fs.Duration("setup-budget", sip.DefaultSetupBudget, "with --max-pending-invites 0, the mean call setup time the pending-INVITE limit allows at the current call rate")
	maxReadDelay := fs.Duration("max-read-delay", sip.DefaultMaxReadDelay, "refuse new INVITEs (stateless 503 + Retry-After, before parsing) while SIP datagrams wait longer than this in the UDP socket's receive queue and the kernel drops datagrams from it (the ACKs and BYEs of accepted calls among them) (-1ns: off)")
	maxSchedLatency := fs.Duration("max-sched-latency", sip.DefaultMaxSchedLatency, "refuse new INVITEs (stateless 503 + Retry-After, before parsing) while the Go scheduler's queueing delay is above this; the ACKs and BYEs of accepted calls would wait as long (-1ns: off)")
	maxCalls := fs.Int("max-calls", 0, "inbound calls up at once; beyond it new INVITEs get 503 + Retry-After (0: no limit but the RTP ports)")
	retryAfter := fs.Duration("retry-after", sip.DefaultRetryAfter, "Retry-After of overload 503s")
	drain := fs.Duration("drain", 0, "on SIGTERM/SIGINT, let the calls up end on their own for up to this long (new calls get 503, OPTIONS too) before hanging them up; a second signal hangs up at once. e.g. --drain 5m")
	clusterName := fs.String("cluster", "", "join the Switchboard cluster of this name (protoactor-go cluster; see docs/scale-out.md)")
	clusterProvider := fs.String("cluster-provider", "etcd", "how cluster nodes find each other: etcd or automanaged")
	etcdAddrs := fs.String("etcd", "127.0.0.1:2379", "comma-separated etcd endpoints, with --cluster-provider etcd")
	clusterAddr := fs.String("cluster-addr", "127.0.0.1:0", "host:port the cluster's remote messaging listens on (other nodes connect to it)")
	nodeName := fs.String("node-name", "", "this node's name in the cluster (default: --cluster-addr)")
	autoPort := fs.Int("automanaged-port", 0, "this node's health port, with --cluster-provider automanaged")
	secretFile := fs.String("cluster-secret-file", "", "file holding the cluster's shared secret (≥ 16 bytes, same on every node) that signs relay calls between nodes; default: $SWITCHBOARD_CLUSTER_SECRET, else relays are accepted from members' addresses only")
	autoPeers := fs.String("automanaged-peers", "", "comma-separated host:port of every node's --automanaged-port, with --cluster-provider automanaged")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	// sipgo's package-wide logger: warnings rate-limited, quotes cut.
	sipgosip.SetDefaultLogger(slog.New(sip.NewLimitedHandler(log.Handler(), 10)).With("component", "sipgo"))

	if *gogc == 0 && os.Getenv("GOGC") == "" {
		// A fifth of the collections of Go's 100: near the capacity
		// knee (7,000 calls/s) 5-19 % less CPU per call than 200, and
		// a peak still well under diago's at every rate measured
		// (docs/BENCHMARKS.md, "GOGC 200 by default" and "Our own
		// INVITE transaction, GOGC 400").
		*gogc = defaultGOGC
	}
	cfg := framework.Config{SIPAddr: *sipAddr, HTTPAddr: *httpAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, Logger: log, Ringback: *ringback,
		SIPConns: sip.ConnLimits{MaxPerIP: *maxConnsPerIP}, CallLimits: sip.CallLimits{GuestCalls: *guestCalls, GuestRate: *guestRate},
		Pprof: *pprofOn, GCPercent: *gogc,
		Overload:     sip.OverloadOptions{MaxPendingInvites: *maxPending, SetupBudget: *setupBudget, MaxCalls: *maxCalls, RetryAfter: *retryAfter, MaxSchedLatency: *maxSchedLatency, MaxReadDelay: *maxReadDelay},
		DrainTimeout: *drain}
	if *wsOrigins != "" {
		cfg.WebSocketOrigins = strings.Split(*wsOrigins, ",")
	}
	if *memLimit != "" {
		n, err := parseBytes(*memLimit)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		cfg.MemoryLimit = n
	}
	if *tlsAddr != "-" {
		cfg.TLSAddr = *tlsAddr
	}
	if *iceAddr != "-" && *httpAddr != "-" {
		dir := *dataDir
		if dir == "-" {
			dir = ""
		}
		key, err := tokenKey(dir)
		if err != nil {
			return fmt.Errorf("browser token key: %w", err)
		}
		cfg.Browsers = &framework.BrowserConfig{TokenKey: key, ICEAddr: *iceAddr}
		if *wsOrigins != "" {
			cfg.Browsers.AllowedOrigins = strings.Split(*wsOrigins, ",")
		}
		if *publicIP != "" {
			cfg.Browsers.PublicIPs = []string{*publicIP}
		}
	}
	if *dataDir != "-" {
		cfg.DataDir = *dataDir
	}
	for _, n := range strings.Split(*tlsNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			cfg.TLSHostnames = append(cfg.TLSHostnames, n)
		}
	}
	lo, hi, ok := strings.Cut(*rtpPorts, "-")
	min, err1 := strconv.Atoi(lo)
	max, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || min <= 0 || max < min {
		return fmt.Errorf("--rtp-ports %q: want MIN-MAX", *rtpPorts)
	}
	cfg.RTPPortMin, cfg.RTPPortMax, cfg.RTPKeepSockets, cfg.RTPPortRest, cfg.RTCPPortPair = min, max, *keepSockets, *portRest, *rtcpPair
	if *publicIP != "" {
		ip, err := netip.ParseAddr(*publicIP)
		if err != nil {
			return fmt.Errorf("--public-ip: %w", err)
		}
		cfg.PublicIP = ip
	}

	if *usersFile != "" {
		dir, err := sip.LoadDirectory(*usersFile)
		if err != nil {
			return err
		}
		cfg.Users = dir
	}
	if *trunksFile != "" {
		trunks, err := sip.LoadTrunks(*trunksFile)
		if err != nil {
			return err
		}
		cfg.Trunks = trunks
	}

	prompts := apps.DemoPrompts()
	router := framework.NewRouter()
	router.Handle("echo", apps.Echo(prompts))
	router.Handle("tone", apps.Tone(1000))
	router.HandleFunc("reflect", func(ctx context.Context, c *framework.Call) error {
		return c.Echo(ctx) // instant echo without the announcement: load tests
	})
	// In cluster mode rooms are the cluster's: a room lives on the node
	// its grain picks and every node's callers reach the same mixer.
	var node *cluster.Node
	joinRoom := func(ctx context.Context, c *framework.Call, room string) error {
		if node != nil {
			return node.JoinRoom(ctx, c, room, framework.JoinOptions{})
		}
		return c.Join(ctx, room, framework.JoinOptions{})
	}
	router.HandleFunc("conf", func(ctx context.Context, c *framework.Call) error {
		return joinRoom(ctx, c, "demo")
	})
	router.HandleFunc("park", func(ctx context.Context, c *framework.Call) error {
		// Answer and keep the caller on the line, silent, until one side
		// hangs up: a call other legs can be moved into.
		if err := c.Answer(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	router.HandleFunc("room-*", func(ctx context.Context, c *framework.Call) error {
		return joinRoom(ctx, c, strings.TrimPrefix(c.User(), "room-"))
	})
	ivr := &apps.IVR{Prompts: prompts}
	router.Handle("ivr", ivr)
	router.Default(ivr)
	var handler framework.Handler = router
	if cfg.Users != nil {
		// Registered users are reachable by name; everything else as above.
		handler = apps.Extensions(cfg.Users, router)
	}

	srv, err := framework.NewServer(cfg, handler)
	if err != nil {
		return err
	}
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The server stops after the first signal, once a cluster node has
	// handed the rooms it hosts over to the other nodes.
	ctx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	var handOver atomic.Pointer[cluster.Node]
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		// The first signal starts the shutdown (and the drain); a second
		// one ends the drain: the calls still up are hung up.
		select {
		case <-sigCtx.Done():
		case <-finished:
			return
		}
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(again)
		if n := handOver.Load(); n != nil {
			hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
			n.HandOver(hctx)
			hcancel()
		}
		stopServing()
		select {
		case <-again:
			srv.EndDrain()
		case <-finished:
		}
	}()
	if *clusterName != "" {
		prov, err := cluster.ParseProvider(*clusterProvider)
		if err != nil {
			return fmt.Errorf("--cluster-provider: %w", err)
		}
		secret, err := clusterSecret(*secretFile)
		if err != nil {
			return err
		}
		node, err = cluster.Join(ctx, srv, cluster.Options{Name: *clusterName, Node: *nodeName, Addr: *clusterAddr,
			Provider: prov, Etcd: splitList(*etcdAddrs), AutomanagedPort: *autoPort, AutomanagedPeers: splitList(*autoPeers),
			Secret: secret, Logger: log})
		if err != nil {
			return err
		}
		node.Routes()
		handOver.Store(node)
		// Relay calls from other nodes (members' SIP addresses only; a
		// caller elsewhere gets 403). Calls that put a leg into a room here:
		router.Handle(cluster.RoomUserPrefix+"*", node.MembersOnly(cluster.RoomHandler()))
		// Calls from other nodes that put a leg into a call here.
		router.Handle(cluster.CallUserPrefix+"*", node.MembersOnly(node.CallHandler()))
		// Calls from other nodes for a user registered here over a
		// connection (TCP, TLS, WebSocket).
		router.Handle(cluster.UserUserPrefix+"*", node.MembersOnly(node.UserHandler()))
		// Browsers on this node watch and follow sessions of any node.
		srv.SetRemoteSessions(node)
		// Leave after the calls are hung up, so the others see this node
		// leave cleanly instead of losing it.
		defer node.Leave()
	}
	go func() {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return
		}
		certURL := ""
		if h := srv.HTTPAddr(); h != "" && *tlsCert == "" && srv.TLSAddr().IsValid() {
			certURL = "http://" + displayHTTP(h) + "/tls/cert.pem"
		}
		fmt.Print(banner(bannerInfo{SIP: srv.SIPAddr(), TLS: srv.TLSAddr(), HTTP: srv.HTTPAddr(), Users: cfg.Users, Trunks: cfg.Trunks, CertURL: certURL}))
		if t := srv.Tokens(); t != nil {
			// A ready link for the browser softphone (a demo user, a day).
			fmt.Printf("Browser softphone: http://%s/?token=%s\n(more tokens: switchboard token --user NAME)\n",
				displayHTTP(srv.HTTPAddr()), url.QueryEscape(t.MintFor("demo", 24*time.Hour)))
		}
	}()
	if err := srv.ListenAndServe(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// defaultDataDir is $XDG_DATA_HOME/switchboard, else
// ~/.local/share/switchboard, else "" (keep nothing).
func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "switchboard")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "switchboard")
	}
	return ""
}

// bannerInfo is what the start-up banner describes.
type bannerInfo struct {
	SIP    netip.AddrPort
	TLS    netip.AddrPort // invalid when TLS is off
	HTTP   string         // "" when HTTP is off
	Users  *sip.Directory // nil without --users
	Trunks []sip.Trunk
	// CertURL is where phones download the development certificate.
	CertURL string
}

// banner is the text printed once the server listens: where it listens,
// whether phones must register, the trunks, and what to call.
func banner(b bannerInfo) string {
	var w strings.Builder
	host := b.SIP.Addr().String()
	if b.SIP.Addr().IsUnspecified() {
		host = "127.0.0.1"
	}
	hp := net.JoinHostPort(host, strconv.Itoa(int(b.SIP.Port())))
	fmt.Fprintf(&w, "\nSwitchboard is listening.\n  SIP:  %s (UDP and TCP)\n", b.SIP)
	if b.TLS.IsValid() {
		fmt.Fprintf(&w, "  TLS:  %s (SIP over TLS)\n", b.TLS)
		if b.CertURL != "" {
			fmt.Fprintf(&w, "        its development certificate, for phones to trust: %s\n", b.CertURL)
		}
	} else {
		fmt.Fprintf(&w, "  TLS:  off\n")
	}
	if b.HTTP != "" {
		fmt.Fprintf(&w, "  WS:   ws://%s/sip (SIP over WebSocket)\n  HTTP: http://%s/\n", displayHTTP(b.HTTP), displayHTTP(b.HTTP))
	} else {
		fmt.Fprintf(&w, "  HTTP: off\n")
	}
	if len(b.Trunks) > 0 {
		names := make([]string, len(b.Trunks))
		for i, t := range b.Trunks {
			names[i] = t.Name + " (" + t.Addr()
			if t.Trusted {
				names[i] += ", trusted"
			}
			names[i] += ")"
		}
		fmt.Fprintf(&w, "  Trunks: %s\n", strings.Join(names, ", "))
	}
	w.WriteString("\n")
	if b.Users != nil {
		names := b.Users.Names()
		fmt.Fprintf(&w, "Users (%d): %s. Register a softphone as one of them at %s (digest auth);\n"+
			"a user's name calls that user. Calls from phones that claim a user's name must authenticate.\n"+
			"Anyone can call the demo routes:\n", len(names), strings.Join(names, ", "), hp)
	} else {
		w.WriteString("Call it from a SIP softphone (no registration needed):\n")
	}
	fmt.Fprintf(&w, "  sip:ivr@%s   demo menu (1 tone, 2 echo, 3 read back digits)\n"+
		"  sip:echo@%s  echo test\n  sip:tone@%s  1 kHz tone\n  sip:conf@%s  conference room\n\nCtrl-C stops it (active calls get BYE).\n",
		hp, hp, hp, hp)
	return w.String()
}

func displayHTTP(addr string) string {
	if strings.HasPrefix(addr, "[::]:") {
		return "localhost:" + strings.TrimPrefix(addr, "[::]:")
	}
	if strings.HasPrefix(addr, "0.0.0.0:") {
		return "localhost:" + strings.TrimPrefix(addr, "0.0.0.0:")
	}
	return addr
}

// defaultGOGC is serve's GC target when neither --gogc nor $GOGC sets one.
const defaultGOGC = 400

// parseBytes reads a size such as 512MiB, 2GiB, 1.5G or 1000000 (bytes).
func parseBytes(v string) (int64, error) {
	v = strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f*mult > math.MaxInt64 {
		return 0, fmt.Errorf("%q: want a positive size such as 512MiB or 2GiB", v)
	}
	return int64(f * mult), nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clusterSecret reads --cluster-secret-file (surrounding white space
// trimmed), else $SWITCHBOARD_CLUSTER_SECRET; nil when neither is set.
func clusterSecret(file string) ([]byte, error) {
	if file == "" {
		if v := strings.TrimSpace(os.Getenv("SWITCHBOARD_CLUSTER_SECRET")); v != "" {
			return []byte(v), nil
		}
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--cluster-secret-file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("--cluster-secret-file %s is empty", file)
	}
	return b, nil
}
