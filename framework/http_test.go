package framework

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/switchboard-voice/switchboard/sip"
)

// startHTTPServer runs a server with SIP and HTTP on loopback ephemeral
// ports and returns it with its base URL.
func startHTTPServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	cfg.HTTPAddr = "127.0.0.1:0"
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 38000, 38099 // no other package's tests use 38000-38999
	}
	srv := startTestServer(t, cfg, HandlerFunc(func(ctx context.Context, c *Call) error { return c.Reject(ctx, 486) }))
	return srv, "http://" + srv.HTTPAddr()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(b)
}

// Server.Handle adds a route beside the built-in ones; the built-in ones
// keep working, and pprof is absent unless enabled.
func TestServerHandleBesideBuiltins(t *testing.T) {
	srv, base := startHTTPServer(t, Config{})
	srv.HandleFunc("GET /hello/{name}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.PathValue("name"))
	})
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/hello/world", 200, "hello world"},
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ready"},
		{"/", 200, "metrics: /metrics"},
		{"/metrics", 200, "switchboard_calls_active 0"},
		{"/debug/pprof/", 404, ""},
		{"/nothing-here", 404, ""},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.code, tt.body)
		}
	}
}

// Config.HTTPHandler still serves what the built-in routes do not, and
// Config.Pprof mounts the profiles.
func TestHTTPHandlerAndPprof(t *testing.T) {
	_, base := startHTTPServer(t, Config{Pprof: true, HTTPHandler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app "+r.URL.Path)
	})})
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/", 200, "app /"},
		{"/phone.html", 200, "app /phone.html"},
		{"/healthz", 200, "ok"},
		{"/debug/pprof/", 200, "goroutine"},
		{"/debug/pprof/cmdline", 200, ""},
	}
	for _, tt := range tests {
		code, body := get(t, base+tt.path)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.code, tt.body)
		}
	}
}

// A server whose RTP ports are all taken is not ready.
func TestReadyzNoPorts(t *testing.T) {
	srv, base := startHTTPServer(t, Config{RTPPortMin: 38100, RTPPortMax: 38101}) // one pair: nobody else may hold it
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("readyz = %d before the ports are taken", code)
	}
	conn, port, err := srv.ports.Listen(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, base+"/readyz")
	conn.Close()
	srv.ports.Release(port)
	if code != 503 || !strings.Contains(body, "RTP ports") {
		t.Fatalf("readyz with no free port = %d %q, want 503", code, body)
	}
}

func TestCauseLabel(t *testing.T) {
	tests := []struct{ cause, want string }{
		{"remote hangup", "remote_hangup"},
		{"local hangup", "local_hangup"},
		{"canceled", "canceled"},
		{"media timeout", "media_timeout"},
		{"session expired", "session_expired"},
		{"hangup", "hangup"},
		{"no ack", "no_ack"},
		{"rejected 486", "rejected_486"},
		{"rejected 99", "rejected"},
		{"rejected 486x", "rejected"},
		{"rejected 200", "rejected"},
		{"sip: answer abc: context deadline exceeded", "other"},
		{"", "other"},
	}
	for _, tt := range tests {
		if got := causeLabel(tt.cause); got != tt.want {
			t.Errorf("causeLabel(%q) = %q, want %q", tt.cause, got, tt.want)
		}
	}
	// A call whose 200 was never ACKed ends with Answer's wrapped error.
	noAck := fmt.Errorf("sip: answer: %w", fmt.Errorf("%w within 4s", sip.ErrNoAck))
	if got := causeLabel(causeString(noAck)); got != "no_ack" {
		t.Errorf("an un-ACKed call's cause label = %q, want no_ack", got)
	}
}

// Counting a SIP message is one counter increment once its label child is
// cached: no allocation.
func TestMetricsMessageAllocatesNothing(t *testing.T) {
	m := newServerMetrics(&Server{})
	m.Message(sip.MessageIn, sip.MethodInvite, 0)
	m.Message(sip.MessageOut, sip.MethodInvite, 200)
	if n := testing.AllocsPerRun(100, func() {
		m.Message(sip.MessageIn, sip.MethodInvite, 0)
		m.Message(sip.MessageOut, sip.MethodInvite, 200)
	}); n != 0 {
		t.Fatalf("Message allocates %.0f times", n)
	}
}

// BenchmarkObserveCDR is the per-call metrics work at the end of a call.
func BenchmarkObserveCDR(b *testing.B) {
	m := newServerMetrics(&Server{})
	cdr := CDR{Cause: "remote hangup", Answer: time.Now(), Media: MediaStats{PacketsIn: 1500, PacketsOut: 1500, Lost: 3, Jitter: 2 * time.Millisecond, MOS: 4.3}}
	b.ReportAllocs()
	for b.Loop() {
		m.observeCDR(cdr)
	}
}

// BenchmarkObserveMessage is the per-SIP-message metrics work.
func BenchmarkObserveMessage(b *testing.B) {
	m := newServerMetrics(&Server{})
	b.ReportAllocs()
	for b.Loop() {
		m.Message(sip.MessageOut, sip.MethodInvite, 180)
	}
}

// MemoryLimit and GCPercent reach the runtime when the server starts.
func TestMemorySettingsApplied(t *testing.T) {
	prevLimit, prevGC := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	debug.SetGCPercent(prevGC)
	t.Cleanup(func() {
		debug.SetMemoryLimit(prevLimit)
		debug.SetGCPercent(prevGC)
	})
	startHTTPServer(t, Config{MemoryLimit: 3 << 30, GCPercent: 250})
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Errorf("memory limit = %d, want %d", got, int64(3<<30))
	}
	if got := debug.SetGCPercent(prevGC); got != 250 {
		t.Errorf("GC percent = %d, want 250", got)
	}
}

// Every metric passes Prometheus's naming lint (prefix, _total on
// counters, base units, help text).
func TestMetricsLint(t *testing.T) {
	srv, _ := startHTTPServer(t, Config{})
	problems, err := testutil.GatherAndLint(srv.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "switchboard_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	mfs, err := srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "switchboard_") {
			ours++
		}
	}
	if ours < 15 {
		t.Errorf("only %d switchboard_ metrics gathered", ours)
	}
}

// The server gives memory back once calls fall to half of a peak of at
// least trimMinPeak, again each time they halve from there (while that
// level is itself at least trimMinPeak), and once more trimAgain
// observations after a trim if calls have not grown since.
func TestMemoryTrimmerTrimsAfterLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		calls []int
		trims []int // indexes of the observations that trim
	}{
		{"idle server", []int{0, 0, 3, 1, 0}, nil},
		{"small peak", []int{10, trimMinPeak - 1, 0}, nil},
		{"load then quiet", []int{100, 400, 300, 200, 150, 0, 0}, []int{3, 5}},
		{"still busy", []int{400, 390, 350, 201}, nil},
		{"two bursts", []int{200, 0, 0, 300, 100, 0}, []int{1, 4, 5}},
		{"follow-up", []int{200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []int{1, 1 + trimAgain}},
		{"no follow-up when busy again", []int{200, 0, 0, 0, 0, 0, 0, 0, 10, 20}, []int{1}},
		{"falls slowly", []int{100, 60, 50, 40, 0}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m memTrimmer
			var got []int
			for i, n := range tc.calls {
				if _, trim := m.observe(n); trim {
					got = append(got, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.trims) {
				t.Fatalf("trims at %v, want %v", got, tc.trims)
			}
		})
	}
}
