package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	sipgosip "github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/testharness"
)

const loadUsage = `usage: switchboard load [flags]

Simulates callers against a SIP server (ours or any other, e.g. a SIPp UAS)
and reports calls attempted, answered and failed by reason, set-up latency
percentiles, whether each caller heard what it expected, RTP loss, jitter
and an E-model MOS, and the server's CPU and memory when it runs on this
host. Every call really speaks SIP and RTP from 127.0.0.1 — or, with
-transport webrtc, is a virtual browser: its own WebSocket to our server's
/ws, a token login, then a WebRTC call (ICE, DTLS-SRTP, Opus or PCMU).

Examples:
  # 5 calls/s for 30 s against the demo server's echo route, each caller
  # plays a 1 kHz tone and must hear it back:
  switchboard load -target sip:reflect@127.0.0.1:5060 -rate 5 -duration 30s

  # hold 20 calls up for a minute, ramping up over 10 s, no audio checks,
  # sampling the server's CPU and RSS:
  switchboard load -target 127.0.0.1:5060 -concurrent 20 -ramp 10s -duration 60s -expect none -process switchboard

  # a scenario file (see testharness.ParseScenario), with results as files:
  switchboard load -scenario contact-centre.scn -json out.json -csv calls.csv -svg run.svg

  # 10 virtual browsers a second for 30 s calling the tone route, each must
  # hear 1 kHz; tokens are minted with the key in the server's data dir:
  switchboard load -transport webrtc -ws ws://127.0.0.1:8080/ws -target tone -expect tone:1000 -rate 10 -duration 30s

  # 30 % browsers, 70 % SIP phones, all calling the echo route:
  switchboard load -transport mixed:30 -ws ws://127.0.0.1:8080/ws -target sip:reflect@127.0.0.1:5060 -token "$(switchboard token --user load | head -1)"

  # the same load against a SIPp UAS and against us, side by side:
  sipp -sn uas -rtp_echo -i 127.0.0.1 -p 5070 &
  switchboard load -target sip:reflect@127.0.0.1:5060 -compare 127.0.0.1:5070 -rate 5 -duration 20s

Flags:
`

type loadFlags struct {
	target, user, scenario, expect, hold, impair     string
	rate                                             float64
	poisson, noAudio, quiet                          bool
	concurrent, maxCalls, pid                        int
	ramp, duration, setupTimeout                     time.Duration
	seed                                             uint64
	process, jsonOut, csvOut, svgOut, compare, ports string
	sipAddr, transport, ws, token, dataDir           string
}

func load(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned; -help prints below
	fs.Usage = func() {}
	var f loadFlags
	fs.StringVar(&f.target, "target", "sip:reflect@127.0.0.1:5060", "SIP URI to call, or host:port (then -user is the user part); e.g. sip:ivr@10.0.0.5:5060")
	fs.StringVar(&f.user, "user", "reflect", "user part when -target is host:port")
	fs.StringVar(&f.scenario, "scenario", "", "scenario file (arrivals, hold times, caller steps); flags set explicitly override it, e.g. -scenario cc.scn -duration 10s")
	fs.Float64Var(&f.rate, "rate", 1, "new calls per second, e.g. -rate 10")
	fs.BoolVar(&f.poisson, "poisson", false, "calls arrive as a Poisson process of mean -rate instead of evenly spaced")
	fs.IntVar(&f.concurrent, "concurrent", 0, "hold this many calls up instead of a rate (a new call starts when one ends), e.g. -concurrent 50")
	fs.DurationVar(&f.ramp, "ramp", 0, "climb linearly to the rate (or concurrency) over this time, e.g. -ramp 10s")
	fs.DurationVar(&f.duration, "duration", 30*time.Second, "how long new calls start; running calls then finish, e.g. -duration 60s")
	fs.StringVar(&f.hold, "hold", "10s", `call length from answer: fixed "20s", uniform "10s-30s" or exponential "exp:20s"`)
	fs.IntVar(&f.maxCalls, "max-calls", 0, "cap on concurrent calls; arrivals above it count as failed (0: none), e.g. -max-calls 100")
	fs.DurationVar(&f.setupTimeout, "setup-timeout", 10*time.Second, "give up a call not answered in this time, e.g. -setup-timeout 5s")
	fs.StringVar(&f.expect, "expect", "echo", `what each caller must hear: "echo" (it plays 1 kHz and hears it back), "tone:HZ" (e.g. tone:1000), "sound" (anything) or "none"`)
	fs.BoolVar(&f.noAudio, "no-audio", false, "send and receive RTP but analyse nothing (same as -expect none)")
	fs.StringVar(&f.impair, "impair", "", `impair the RTP callers (SIP or browsers) receive, e.g. -impair "loss 5% jitter 40ms" (keys: loss, burst, latency, jitter, reorder, duplicate, bandwidth)`)
	fs.Uint64Var(&f.seed, "seed", 1, "seed for arrivals, hold times and impairments (same seed, same run)")
	fs.IntVar(&f.pid, "pid", 0, "sample this process's CPU and RSS from /proc (the server, on this host), e.g. -pid 4242")
	fs.StringVar(&f.process, "process", "", "like -pid, by process name, e.g. -process switchboard")
	fs.StringVar(&f.jsonOut, "json", "", "write the full report (summary, series, every call) as JSON to this file")
	fs.StringVar(&f.csvOut, "csv", "", "write one CSV row per call (with a heard yes/no column per check) to this file")
	fs.StringVar(&f.svgOut, "svg", "", "write an SVG plot of call rate, concurrency, set-up latency and MOS over time to this file")
	fs.StringVar(&f.compare, "compare", "", "also run the same load against this host:port (a SIPp UAS, e.g. sipp -sn uas -rtp_echo) first and print the ratios")
	fs.StringVar(&f.ports, "rtp-ports", "40000-40999", "RTP ports of the simulated callers")
	fs.StringVar(&f.sipAddr, "sip-addr", "127.0.0.1:0", "SIP address of the simulated callers")
	fs.BoolVar(&f.quiet, "quiet", false, "no live progress line")
	fs.StringVar(&f.transport, "transport", "sip", `what the callers are: "sip" (virtual phones), "webrtc" (virtual browsers on -ws) or "mixed:PCT" (PCT % browsers, the rest SIP), e.g. -transport mixed:30`)
	fs.StringVar(&f.ws, "ws", "ws://127.0.0.1:8080/ws", "the server's WebSocket URL for browser callers; they call -target's user part (or -target itself when it is a bare route name such as tone)")
	fs.StringVar(&f.token, "token", "", `token every browser caller logs in with, e.g. -token "$(switchboard token --user load | head -1)"; without it each caller gets its own, minted with -data-dir's key`)
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "the server's --data-dir: browser tokens are minted with its token.key (read, never created), e.g. -data-dir /var/lib/switchboard")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, loadUsage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return nil
		}
		return fmt.Errorf("load: %w (switchboard load -help lists the flags)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("load: unexpected argument %q (switchboard load -help lists the flags)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	sc, err := f.buildScenario(set)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	opts := testharness.LoadOptions{SIPAddr: f.sipAddr}
	if sc.Browsers.Share > 0 {
		if err := f.browserTokens(&opts); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		if f.compare != "" {
			return errors.New("load: -compare runs against a SIPp UAS, which takes SIP callers only (use -transport sip)")
		}
	}
	if opts.RTPPortMin, opts.RTPPortMax, err = portRange(f.ports); err != nil {
		return fmt.Errorf("load: -rtp-ports: %w", err)
	}
	switch {
	case f.pid != 0:
		opts.ServerPID = f.pid
	case f.process != "":
		if opts.ServerPID, err = testharness.FindPID(f.process); err != nil {
			return fmt.Errorf("load: -process: %w", err)
		}
	}
	// sipgo logs transport chatter (closing client sockets) process-wide.
	sipgosip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var base *testharness.Report
	if f.compare != "" {
		other := *sc
		other.Target = retarget(sc.Target, f.compare)
		fmt.Fprintf(stdout, "== %s (reference)\n", other.Target)
		ropts := opts
		ropts.ServerPID = 0
		if base, err = runOnce(ctx, &other, ropts, f.quiet, stdout, stderr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\n== %s\n", sc.Target)
	}
	rep, err := runOnce(ctx, sc, opts, f.quiet, stdout, stderr)
	if err != nil {
		return err
	}
	if base != nil {
		printRatio(stdout, base, rep)
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{f.jsonOut, rep.WriteJSON}, {f.csvOut, rep.WriteCSV}, {f.svgOut, rep.WriteSVG}} {
		if out.path == "" {
			continue
		}
		if err := writeFile(out.path, out.write); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	return nil
}

func (f *loadFlags) buildScenario(set map[string]bool) (*testharness.Scenario, error) {
	sc := &testharness.Scenario{Rate: 1, Duration: 30 * time.Second, Seed: 1}
	if f.scenario != "" {
		var err error
		if sc, err = testharness.LoadScenario(f.scenario); err != nil {
			return nil, err
		}
	}
	fromFile := f.scenario != ""
	use := func(name string) bool { return !fromFile || set[name] }
	if use("transport") {
		share, err := browserShare(f.transport)
		if err != nil {
			return nil, fmt.Errorf("-transport: %w", err)
		}
		sc.Browsers = testharness.BrowserCallers{Share: share, WS: f.ws}
	}
	if set["ws"] {
		sc.Browsers.WS = f.ws
	}
	bareRoute := !strings.ContainsAny(f.target, ":@")
	if sc.Browsers.Share == 1 && bareRoute && (use("target")) {
		// A browser calls a route or user by name: no SIP URI needed.
		sc.Target, sc.Browsers.To = "", f.target
	} else if use("target") || use("user") {
		t, err := targetURI(f.target, f.user)
		if err != nil {
			return nil, fmt.Errorf("-target: %w", err)
		}
		if !fromFile || set["target"] || sc.Target == "" {
			sc.Target = t
		}
	}
	if use("rate") {
		sc.Rate = f.rate
		if sc.Arrival == testharness.ArrivalConcurrent {
			sc.Arrival = testharness.ArrivalRate
		}
	}
	if use("poisson") {
		sc.Arrival = testharness.ArrivalRate
		if f.poisson {
			sc.Arrival = testharness.ArrivalPoisson
		}
	}
	if set["concurrent"] {
		sc.Arrival, sc.Concurrent = testharness.ArrivalConcurrent, f.concurrent
	}
	if use("ramp") {
		sc.Ramp = f.ramp
	}
	if use("duration") {
		sc.Duration = f.duration
	}
	if use("max-calls") {
		sc.MaxCalls = f.maxCalls
	}
	if use("setup-timeout") {
		sc.SetupTimeout = f.setupTimeout
	}
	if use("seed") {
		sc.Seed = f.seed
	}
	if use("hold") {
		h, err := parseHoldFlag(f.hold)
		if err != nil {
			return nil, fmt.Errorf("-hold: %w", err)
		}
		sc.Hold = h
	}
	if set["impair"] || (!fromFile && f.impair != "") {
		im, err := testharness.ParseImpairment(f.impair)
		if err != nil {
			return nil, fmt.Errorf("-impair: %w", err)
		}
		im.Seed = sc.Seed
		sc.Downlink = im
	}
	if use("expect") {
		steps, err := expectSteps(f.expect)
		if err != nil {
			return nil, fmt.Errorf("-expect: %w", err)
		}
		sc.Steps = steps
	}
	if f.noAudio {
		sc.NoAudio = true
	}
	if sc.Browsers.Share == 1 && sc.Browsers.To == "" {
		// Only browsers: the SIP target just names the route they call.
		sc.Browsers.To, sc.Target = sc.BrowserTo(), ""
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return sc, nil
}

// browserShare reads -transport: the share of callers that are browsers.
func browserShare(s string) (float64, error) {
	switch {
	case s == "sip":
		return 0, nil
	case s == "webrtc":
		return 1, nil
	case strings.HasPrefix(s, "mixed:"):
		v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(s, "mixed:"), "%"), 64)
		if err != nil || v <= 0 || v >= 100 {
			return 0, fmt.Errorf("%q: want mixed:PCT with PCT in (0, 100), e.g. mixed:30", s)
		}
		return v / 100, nil
	}
	return 0, fmt.Errorf("%q: want sip, webrtc or mixed:PCT", s)
}

// browserTokens sets how browser callers log in: -token, or a token per
// caller minted with the server's key (DIR/token.key, never created here).
func (f *loadFlags) browserTokens(opts *testharness.LoadOptions) error {
	if f.token != "" {
		opts.BrowserToken = f.token
		return nil
	}
	if f.dataDir == "" || f.dataDir == "-" {
		return errors.New("browser callers need a token: -token TOKEN (switchboard token --user NAME) or the server's -data-dir")
	}
	key, err := os.ReadFile(filepath.Join(f.dataDir, "token.key"))
	if err != nil {
		return fmt.Errorf("browser callers need a token: -token TOKEN, or -data-dir pointing at the server's data directory (%w)", err)
	}
	if opts.Tokens, err = bridge.NewTokens(key); err != nil {
		return fmt.Errorf("-data-dir: %w", err)
	}
	return nil
}

// expectSteps turns -expect into a caller script.
func expectSteps(s string) ([]testharness.Step, error) {
	switch {
	case s == "none":
		return nil, nil
	case s == "sound":
		return []testharness.Step{{Kind: testharness.StepExpectSound, Timeout: 5 * time.Second, Name: "sound"}}, nil
	case s == "echo":
		return []testharness.Step{
			{Kind: testharness.StepPlayTone, Freq: 1000, Duration: 24 * time.Hour},
			{Kind: testharness.StepExpectTone, Freq: 1000, Timeout: 5 * time.Second, Name: "echo"},
		}, nil
	case strings.HasPrefix(s, "tone:"):
		hz, err := strconv.ParseFloat(strings.TrimPrefix(s, "tone:"), 64)
		if err != nil || hz < 50 || hz > 3900 {
			return nil, fmt.Errorf("%q: want tone:HZ with HZ in 50..3900", s)
		}
		return []testharness.Step{{Kind: testharness.StepExpectTone, Freq: hz, Timeout: 5 * time.Second}}, nil
	}
	return nil, fmt.Errorf("%q: want echo, tone:HZ, sound or none", s)
}

func parseHoldFlag(s string) (testharness.Hold, error) {
	// The scenario file's syntax, with "exp:" for the flag's single word.
	sc, err := testharness.ParseScenario("-hold", strings.NewReader("target sip:x@y\nhold "+strings.Replace(s, "exp:", "exp ", 1)+"\n"))
	if err != nil {
		var se *testharness.ScenarioError
		if errors.As(err, &se) {
			err = se.Err
		}
		return testharness.Hold{}, err
	}
	return sc.Hold, nil
}

// targetURI accepts a SIP URI or host:port.
func targetURI(target, user string) (string, error) {
	if strings.HasPrefix(target, "sip:") || strings.HasPrefix(target, "sips:") {
		return target, nil
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return "", fmt.Errorf("%q is neither a sip: URI nor host:port", target)
	}
	return "sip:" + user + "@" + target, nil
}

// hostPort returns the host:port a SIP URI points at (port 5060 if none).
func hostPort(uri string) string {
	s := uri[strings.IndexByte(uri, ':')+1:]
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		s = net.JoinHostPort(strings.Trim(s, "[]"), "5060")
	}
	return s
}

// retarget points uri's user at another host:port.
func retarget(uri, addr string) string {
	user := "load"
	s := uri[strings.IndexByte(uri, ':')+1:]
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		user = s[:i]
	}
	return "sip:" + user + "@" + addr
}

func runOnce(ctx context.Context, sc *testharness.Scenario, opts testharness.LoadOptions, quiet bool, stdout, stderr io.Writer) (*testharness.Report, error) {
	addr := hostPort(sc.Target)
	if strings.HasPrefix(sc.Target, "sip:") && !strings.Contains(sc.Target, "transport=") {
		if err := testharness.Probe(ctx, addr, 2*time.Second); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil, fmt.Errorf("load: nothing listens for SIP at %s (connection refused): is the server running?", addr)
			}
			fmt.Fprintf(stderr, "warning: %s did not answer an OPTIONS probe in 2 s (%v); trying calls anyway\n", addr, err)
		}
	}
	if sc.Browsers.Share > 0 {
		if err := probeWS(ctx, sc.Browsers.WS); err != nil {
			return nil, err
		}
	}
	if !quiet {
		opts.Progress = func(s testharness.Snapshot) {
			fmt.Fprintf(stderr, "\r%4.0fs  attempted %d  answered %d  failed %d  active %d  heard %d/%d   ",
				s.Elapsed.Seconds(), s.Attempted, s.Answered, s.Failed, s.Active, s.ChecksPassed, s.ChecksPassed+s.ChecksFailed)
		}
	}
	rep, err := testharness.Run(ctx, sc, opts)
	if !quiet {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		if errors.Is(err, testharness.ErrTargetDead) {
			return nil, fmt.Errorf("load: %s: %w", addr, err)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	rep.WriteText(stdout)
	return rep, nil
}

// probeWS fails fast when nothing listens at a WebSocket URL's address.
func probeWS(ctx context.Context, wsURL string) error {
	u, err := url.Parse(wsURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("load: -ws %q is not a ws://host:port/path URL", wsURL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "wss" {
			port = "443"
		}
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("load: nothing listens for WebSocket at %s (connection refused): is the server running, with browsers enabled?", addr)
		}
		return fmt.Errorf("load: WebSocket %s: %w", addr, err)
	}
	return c.Close()
}

func printRatio(w io.Writer, base, rep *testharness.Report) {
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", a/b)
	}
	pct := func(r *testharness.Report) float64 {
		if r.Attempted == 0 {
			return 0
		}
		return 100 * float64(r.Answered) / float64(r.Attempted)
	}
	fmt.Fprintf(w, "\n== side by side (%s vs reference %s)\n", rep.Target, base.Target)
	fmt.Fprintf(w, "%-16s %12s %12s %8s\n", "", "ours", "reference", "ratio")
	row := func(name string, a, b float64, unit string) {
		fmt.Fprintf(w, "%-16s %10.2f%-2s %10.2f%-2s %8s\n", name, a, unit, b, unit, ratio(a, b))
	}
	row("answered", pct(rep), pct(base), "%")
	row("completed", float64(rep.Completed), float64(base.Completed), "")
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	row("setup p50", ms(rep.SetupP50), ms(base.SetupP50), "ms")
	row("setup p95", ms(rep.SetupP95), ms(base.SetupP95), "ms")
	row("setup p99", ms(rep.SetupP99), ms(base.SetupP99), "ms")
	row("MOS", rep.MOS, base.MOS, "")
}

func portRange(s string) (int, int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || a <= 0 || b < a+1 || b > 65535 {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX", s)
	}
	return a, b, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
