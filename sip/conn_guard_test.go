package sip

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// logLines counts and keeps what an agent logs (at Info and above, as a
// production server would).
type logLines struct {
	mu      sync.Mutex
	n       int
	bytes   int
	longest int
	kept    []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n += bytes.Count(p, []byte("\n"))
	l.bytes += len(p)
	l.longest = max(l.longest, len(p))
	if len(l.kept) < 2000 {
		l.kept = append(l.kept, string(p))
	}
	return len(p), nil
}

func (l *logLines) stats() (n, size, longest int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.bytes, l.longest
}

// find returns the first line containing every one of subs.
func (l *logLines) find(subs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.kept {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return line
	}
	return ""
}

// startGuardedAgent runs an agent on loopback with UDP, TCP and TLS, a
// registrar with user "alice", and the given connection limits; logs go to
// the returned counter.
func startGuardedAgent(t *testing.T, limits ConnLimits) (*Agent, *logLines) {
	t.Helper()
	return startGuardedAgentWith(t, Config{Conns: limits})
}

// startGuardedAgentWith is startGuardedAgent with more of the Config.
func startGuardedAgentWith(t *testing.T, cfg Config) (*Agent, *logLines) {
	t.Helper()
	ports, err := transport.NewPortPool(35000, 35099)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.ListenAddr, cfg.TLSAddr, cfg.Ports, cfg.Logger, cfg.MediaTimeout = "127.0.0.1:0", "127.0.0.1:0", ports, log, -1
	cfg.Registrar = NewRegistrar(NewDirectory(Account{Name: "alice", Password: "pw"}), "test", log)
	cfg.WebSocketOrigins = []string{"https://allowed.example"}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, logs
}

func optionsRequest(id, transport string, contentLength int, body string) string {
	return fmt.Sprintf("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.1:9;branch=z9hG4bK-%s\r\n"+
		"From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"+
		"Content-Length: %d\r\n\r\n%s", transport, id, id, contentLength, body)
}

// readStatus reads one response from a stream and returns its status code.
func readStatus(t *testing.T, conn net.Conn, br *bufio.Reader) int {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "SIP/2.0" {
		t.Fatalf("not a response: %q", line)
	}
	code, _ := strconv.Atoi(f[1])
	cl := 0
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("response headers: %v", err)
		}
		h = strings.TrimSpace(h)
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && (strings.EqualFold(k, "Content-Length") || k == "l") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
		t.Fatalf("response body: %v", err)
	}
	return code
}

// closedWithin reports whether the server closes conn within d (anything
// it sends meanwhile is read and dropped), and when.
func closedWithin(conn net.Conn, d time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false, time.Since(start)
		}
		return true, time.Since(start) // EOF or reset
	}
}

func dialTLS(t *testing.T, a *Agent) *tls.Conn {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(a.TLSCertificate())
	c, err := tls.Dial("tcp", a.TLSAddr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wsServer(t *testing.T, a *Agent) string {
	t.Helper()
	hs := httptest.NewServer(a.WebSocketHandler())
	t.Cleanup(hs.Close)
	return strings.TrimPrefix(hs.URL, "http://")
}

func dialWS(ctx context.Context, host, origin string) (net.Conn, error) {
	d := ws.Dialer{Protocols: []string{"sip"}}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": []string{origin}})
	}
	c, _, _, err := d.Dial(ctx, "ws://"+host+"/sip")
	return c, err
}

// Finding 2: connections that never send a request, and connections idle
// after one, are closed on TCP, TLS and WebSocket; a TLS connection that
// never handshakes is closed at the handshake deadline.
func TestIdleStreamConnectionsClosed(t *testing.T) {
	const first, idle = 400 * time.Millisecond, 700 * time.Millisecond
	a, logs := startGuardedAgent(t, ConnLimits{FirstRequestTimeout: first, IdleTimeout: idle, HandshakeTimeout: 300 * time.Millisecond})
	wsHost := wsServer(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := map[string]func() net.Conn{
		"TCP": func() net.Conn {
			c, err := net.Dial("tcp", a.TCPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"TLS": func() net.Conn { return dialTLS(t, a) },
		"WS": func() net.Conn {
			c, err := dialWS(ctx, wsHost, "")
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"TLS without handshake": func() net.Conn {
			c, err := net.Dial("tcp", a.TLSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	for _, name := range []string{"TCP", "TLS", "WS", "TLS without handshake"} {
		t.Run(name+" silent", func(t *testing.T) {
			const n = 20
			opened := time.Now()
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = dial[name]()
				defer conns[i].Close()
			}
			for _, c := range conns {
				closed, after := closedWithin(c, first+2*time.Second)
				if !closed {
					t.Fatalf("a silent %s connection is still open after %s", name, after)
				}
			}
			all := time.Since(opened)
			if all < 250*time.Millisecond {
				t.Fatalf("closed after %s, before any deadline", all)
			}
			t.Logf("%d silent %s connections all closed %s after opening (deadlines: handshake 300ms, first request %s)", n, name, all.Round(time.Millisecond), first)
		})
	}
	t.Run("TCP idle after a request", func(t *testing.T) {
		c := dial["TCP"]()
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := io.WriteString(c, optionsRequest("idle-1", "TCP", 0, "")); err != nil {
			t.Fatal(err)
		}
		if code := readStatus(t, c, br); code != 200 {
			t.Fatalf("OPTIONS: %d", code)
		}
		start := time.Now()
		closed, _ := closedWithin(c, idle+2*time.Second)
		if !closed {
			t.Fatal("an idle TCP connection was kept")
		}
		if el := time.Since(start); el < idle/2 {
			t.Fatalf("closed after %s, before the idle lifetime %s", el, idle)
		}
	})
	t.Run("WS idle after a request", func(t *testing.T) {
		c := dial["WS"]()
		defer c.Close()
		if err := wsutil.WriteClientText(c, []byte(optionsRequest("idle-2", "WS", 0, ""))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, err := wsutil.ReadServerText(c)
		if err != nil || !bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
			t.Fatalf("OPTIONS over WS: %q %v", msg, err)
		}
		start := time.Now()
		closed, _ := closedWithin(c, idle+2*time.Second)
		if !closed {
			t.Fatal("an idle WebSocket connection was kept")
		}
		if el := time.Since(start); el < idle/2 {
			t.Fatalf("closed after %s, before the idle lifetime %s", el, idle)
		}
	})
	waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == 0 }, "every guarded connection released")
	if logs.find("TLS handshake failed", "no TLS handshake within") == "" {
		t.Error("the TLS handshake timeout was not logged")
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A connection that carries a live registration is never closed as idle:
// the registrar reaches the phone only through it.
func TestRegisteredConnectionKeptPastIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	a, _ := startGuardedAgent(t, ConnLimits{IdleTimeout: idle})
	c, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := c.LocalAddr().(*net.TCPAddr).AddrPort()
	a.cfg.Registrar.mu.Lock()
	a.cfg.Registrar.bindings["alice"] = []Binding{{User: "alice", Contact: "sip:alice@127.0.0.1", Source: src, Transport: "TCP", Expires: time.Now().Add(time.Hour)}}
	a.cfg.Registrar.mu.Unlock()
	br := bufio.NewReader(c)
	if _, err := io.WriteString(c, optionsRequest("kept-1", "TCP", 0, "")); err != nil {
		t.Fatal(err)
	}
	if code := readStatus(t, c, br); code != 200 {
		t.Fatalf("OPTIONS: %d", code)
	}
	if closed, after := closedWithin(c, 4*idle); closed {
		t.Fatalf("a registered connection was closed after %s", after)
	}
	// Unregistered, it goes at the next idle check.
	a.cfg.Registrar.mu.Lock()
	delete(a.cfg.Registrar.bindings, "alice")
	a.cfg.Registrar.mu.Unlock()
	if closed, _ := closedWithin(c, idle+2*time.Second); !closed {
		t.Fatal("the connection stayed open after the registration went away")
	}
}

// Finding 2: per-IP and total caps. The connection over the cap is closed
// at once, the ones under it stay, and a place freed is usable again.
func TestConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits ConnLimits
		cap    int
	}{
		{"per IP", ConnLimits{MaxPerIP: 5}, 5},
		{"total", ConnLimits{MaxTotal: 7}, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, logs := startGuardedAgent(t, tc.limits)
			var conns []net.Conn
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for range tc.cap {
				c, err := net.Dial("tcp", a.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == tc.cap }, "connections admitted")
			over, err := net.Dial("tcp", a.TLSAddr().String()) // caps span transports
			if err != nil {
				t.Fatal(err)
			}
			defer over.Close()
			if closed, _ := closedWithin(over, 2*time.Second); !closed {
				t.Fatal("the connection over the cap was kept")
			}
			if logs.find("connection refused", "limit reached") == "" {
				t.Error("refusal not logged")
			}
			// The admitted ones still work.
			br := bufio.NewReader(conns[0])
			if _, err := io.WriteString(conns[0], optionsRequest("cap-1", "TCP", 0, "")); err != nil {
				t.Fatal(err)
			}
			if code := readStatus(t, conns[0], br); code != 200 {
				t.Fatalf("OPTIONS on an admitted connection: %d", code)
			}
			conns[1].Close()
			waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == tc.cap-1 }, "a closed connection released")
			again, err := net.Dial("tcp", a.TCPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			br = bufio.NewReader(again)
			if _, err := io.WriteString(again, optionsRequest("cap-2", "TCP", 0, "")); err != nil {
				t.Fatal(err)
			}
			if code := readStatus(t, again, br); code != 200 {
				t.Fatalf("OPTIONS on a connection in a freed place: %d", code)
			}
		})
	}
}

// Finding 6: a flood of garbage over TCP and at the TLS port (many
// connections, megabytes) writes a bounded number of short log lines,
// and the server still answers.
func TestGarbageFloodOverTCPLogsBounded(t *testing.T) {
	a, logs := startGuardedAgent(t, ConnLimits{})
	garbage := make([]byte, 64<<10)
	for i := range garbage {
		garbage[i] = byte(i*131 + i>>7) // binary, few newlines, no header end
	}
	lines := [][]byte{
		garbage,
		[]byte(strings.Repeat("INVITE sip:x SIP/2.0\r\nbroken header line\r\n\r\n", 100)),
		[]byte("\x00\x01\x02" + strings.Repeat("\xff", 9000)),
	}
	start := time.Now()
	sent := 0
	for i := 0; i < 3000 && time.Since(start) < 1500*time.Millisecond; i++ {
		port := a.TCPAddr().String()
		if i%4 == 3 {
			port = a.TLSAddr().String() // garbage where a TLS handshake should be
		}
		c, err := net.Dial("tcp", port)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		n, _ := c.Write(lines[i%len(lines)])
		sent += n
		c.Close()
	}
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond) // let the last connections be read
	n, size, longest := logs.stats()
	perSecond := float64(n) / (elapsed + 300*time.Millisecond).Seconds()
	t.Logf("%d bytes of garbage in %s: %d log lines (%.0f/s), %d bytes of log, longest line %d bytes", sent, elapsed.Round(time.Millisecond), n, perSecond, size, longest)
	if n == 0 {
		t.Fatal("the flood was not logged at all")
	}
	// Each source of lines here (the guard's malformed, TLS and refused
	// topics, sipgo's transport log) is limited to 10 lines a second.
	if limit := 4 * 10 * (elapsed.Seconds() + 1.3); float64(n) > limit {
		t.Fatalf("%d log lines, more than %.0f", n, limit)
	}
	if longest > 1024 {
		t.Fatalf("a log line of %d bytes", longest)
	}
	c, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, optionsRequest("after-flood", "TCP", 0, "")); err != nil {
		t.Fatal(err)
	}
	if code := readStatus(t, c, bufio.NewReader(c)); code != 200 {
		t.Fatalf("OPTIONS after the flood: %d", code)
	}
}

// Finding 7: the WebSocket Origin policy.
func TestWebSocketOrigin(t *testing.T) {
	a, logs := startGuardedAgent(t, ConnLimits{})
	host := wsServer(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, origin string
		ok           bool
	}{
		{"no origin (SIP phone)", "", true},
		{"same origin", "http://" + host, true},
		{"allow-listed", "https://allowed.example", true},
		{"foreign", "https://evil.example", false},
		{"same host, other port", "http://127.0.0.1:1", false},
		{"garbage", "::::", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialWS(ctx, host, tc.origin)
			if !tc.ok {
				var se ws.StatusError
				if err == nil || !errors.As(err, &se) || int(se) != http.StatusForbidden {
					if c != nil {
						c.Close()
					}
					t.Fatalf("origin %q: %v, want 403", tc.origin, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("origin %q refused: %v", tc.origin, err)
			}
			defer c.Close()
			if err := wsutil.WriteClientText(c, []byte(optionsRequest("origin-"+strconv.Itoa(len(tc.name)), "WS", 0, ""))); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			msg, err := wsutil.ReadServerText(c)
			if err != nil || !bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
				t.Fatalf("OPTIONS: %q %v", msg, err)
			}
		})
	}
	if logs.find("foreign origin refused", "evil.example") == "" {
		t.Error("refusal not logged")
	}
}

func TestOriginAllowed(t *testing.T) {
	for _, tc := range []struct {
		origin, host string
		allowed      []string
		ok           bool
	}{
		{"https://pbx.example.com", "pbx.example.com", nil, true}, // a Host header omits the default port
		{"https://pbx.example.com", "pbx.example.com:443", nil, true},
		{"http://pbx.example.com", "pbx.example.com", nil, true},
		{"http://pbx.example.com:8080", "pbx.example.com:8080", nil, true},
		{"http://PBX.example.com:8080", "pbx.example.com:8080", nil, true},
		{"http://evil.example", "pbx.example.com", nil, false},
		{"http://evil.example", "pbx.example.com", []string{"http://evil.example/"}, true},
		{"http://evil.example", "pbx.example.com", []string{"evil.example"}, true},
		{"http://evil.example", "pbx.example.com", []string{"*"}, true},
		{"null", "pbx.example.com", nil, false},
	} {
		if got := originAllowed(tc.origin, tc.host, tc.allowed); got != tc.ok {
			t.Errorf("originAllowed(%q, %q, %q) = %v, want %v", tc.origin, tc.host, tc.allowed, got, tc.ok)
		}
	}
}

// Finding 8: malformed SIP over TCP, TLS and WebSocket gets a 400; a
// connection whose first message is malformed is closed, one that has
// behaved stays; a good request on a new connection works.
func TestMalformedOverStreamsAnswered400(t *testing.T) {
	a, logs := startGuardedAgent(t, ConnLimits{})
	bad := strings.Replace(optionsRequest("bad-1", "TCP", 0, ""), "Max-Forwards: 70", "Max-Forwards 70", 1)
	for _, name := range []string{"TCP", "TLS"} {
		t.Run(name, func(t *testing.T) {
			dial := func() net.Conn {
				if name == "TLS" {
					return dialTLS(t, a)
				}
				c, err := net.Dial("tcp", a.TCPAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			c := dial()
			defer c.Close()
			br := bufio.NewReader(c)
			if _, err := io.WriteString(c, bad); err != nil {
				t.Fatal(err)
			}
			if code := readStatus(t, c, br); code != 400 {
				logs.mu.Lock()
				t.Log(logs.kept)
				logs.mu.Unlock()
				t.Fatalf("malformed first request: %d, want 400", code)
			}
			if closed, _ := closedWithin(c, 2*time.Second); !closed {
				t.Fatal("a connection that began with a malformed message was kept")
			}
			// A connection that behaved: 200, then 400, then 200 again.
			c2 := dial()
			defer c2.Close()
			br2 := bufio.NewReader(c2)
			for i, msg := range []string{optionsRequest("good-1", name, 0, ""), strings.Replace(bad, "bad-1", "bad-2", 2), optionsRequest("good-2", name, 4, "abcd")} {
				if _, err := io.WriteString(c2, msg); err != nil {
					t.Fatal(err)
				}
				want := []int{200, 400, 200}[i]
				if code := readStatus(t, c2, br2); code != want {
					t.Fatalf("message %d: %d, want %d", i, code, want)
				}
			}
		})
	}
	t.Run("WS", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := dialWS(ctx, wsServer(t, a), "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i, msg := range []string{strings.Replace(bad, "bad-1", "bad-ws", 2), optionsRequest("good-ws", "WS", 0, "")} {
			if err := wsutil.WriteClientText(c, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := wsutil.ReadServerText(c)
			want := []string{"SIP/2.0 400", "SIP/2.0 200"}[i]
			if err != nil || !bytes.HasPrefix(res, []byte(want)) {
				t.Fatalf("message %d: %q %v, want %s", i, res, err, want)
			}
		}
	})
	if logs.find("malformed", "header line without a name and colon") == "" {
		t.Error("malformed message not logged")
	}
}

// Finding 7: a Content-Length larger than what arrives closes the
// connection at the message deadline instead of swallowing the next
// request.
func TestContentLengthOverrunClosed(t *testing.T) {
	const msgTimeout = 500 * time.Millisecond
	a, logs := startGuardedAgent(t, ConnLimits{MessageTimeout: msgTimeout})
	c, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, optionsRequest("short-1", "TCP", 100, "only ten b")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed, _ := closedWithin(c, msgTimeout+3*time.Second)
	el := time.Since(start)
	if !closed {
		t.Fatalf("connection with a short body still open after %s", el)
	}
	t.Logf("closed %s after the short message (deadline %s)", el.Round(time.Millisecond), msgTimeout)
	if logs.find("message incomplete", "body_bytes_missing=90") == "" {
		t.Errorf("overrun not logged with what was missing")
	}
	c2, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := io.WriteString(c2, optionsRequest("after-short", "TCP", 0, "")); err != nil {
		t.Fatal(err)
	}
	if code := readStatus(t, c2, bufio.NewReader(c2)); code != 200 {
		t.Fatalf("OPTIONS on a new connection: %d", code)
	}
}

// TLS sent to the TCP port and SIP sent to the TLS port are each closed
// with one line naming the right port; a client that refuses our
// certificate is logged with which side refused and what to check.
func TestWrongProtocolHints(t *testing.T) {
	a, logs := startGuardedAgent(t, ConnLimits{})
	// A TLS ClientHello to the TCP port.
	raw, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a TLS handshake succeeded on the TCP port")
	}
	tc.Close()
	wantTLS := fmt.Sprintf("use port %d for SIP over TLS", a.TLSAddr().Port())
	waitUntil(t, 2*time.Second, func() bool { return logs.find("TLS sent to the TCP port", wantTLS) != "" }, "the TLS-on-TCP hint")

	// Plain SIP to the TLS port.
	c, err := net.Dial("tcp", a.TLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, optionsRequest("plain-on-tls", "TCP", 0, "")); err != nil {
		t.Fatal(err)
	}
	if closed, _ := closedWithin(c, 3*time.Second); !closed {
		t.Fatal("plain SIP on the TLS port was kept")
	}
	c.Close()
	wantTCP := fmt.Sprintf("use port %d for SIP over TCP", a.TCPAddr().Port())
	waitUntil(t, 2*time.Second, func() bool { return logs.find("TLS handshake failed", wantTCP) != "" }, "the SIP-on-TLS hint")

	// A client that does not trust our certificate.
	if _, err := tls.Dial("tcp", a.TLSAddr().String(), &tls.Config{ServerName: "127.0.0.1"}); err == nil {
		t.Fatal("an untrusting client completed the handshake")
	}
	waitUntil(t, 2*time.Second, func() bool {
		return logs.find("TLS handshake failed", "client refused our certificate", "does not trust our certificate") != ""
	}, "the certificate hint")
	if n, _, longest := logs.stats(); longest > 1024 {
		t.Fatalf("%d lines, the longest %d bytes", n, longest)
	}
}

// The accept loop survives descriptor exhaustion: it backs off, logs a
// bounded number of lines, and accepts again once descriptors are free.
func TestAcceptBacksOffWhenOutOfDescriptors(t *testing.T) {
	logs := &logLines{}
	g := newConnGuard(ConnLimits{}, slog.New(slog.NewTextHandler(logs, nil)))
	fl := &failingListener{fails: 6, err: &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}}
	l := newGuardListener(fl, g, streamTCP, nil)
	start := time.Now()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept gave up: %v", err)
	}
	defer c.Close()
	el := time.Since(start)
	n, _, _ := logs.stats()
	t.Logf("6 EMFILE failures: accepted after %s, %d log lines", el.Round(time.Millisecond), n)
	if n != 2 || logs.find("accepting connections again", "failed_accepts=6") == "" {
		t.Fatalf("%d log lines for 6 failures, want one when it started and one when it ended", n)
	}
	if logs.find("out of file descriptors") == "" {
		t.Fatal("no descriptor hint")
	}
	// 5+10+20+40+80+160 ms; without back-off this would be a busy loop.
	if el < 300*time.Millisecond {
		t.Fatalf("no back-off: %s", el)
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

// failingListener fails Accept fails times with err, then hands out one
// end of a pipe.
type failingListener struct {
	mu     sync.Mutex
	fails  int
	err    error
	closed bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, net.ErrClosed
	}
	if l.fails > 0 {
		l.fails--
		return nil, l.err
	}
	a, b := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	return &addrConn{Conn: a}, nil
}

func (l *failingListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}

func (l *failingListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060}
}

// addrConn gives a pipe a TCP remote address.
type addrConn struct{ net.Conn }

func (c *addrConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 4000} }

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"INVITE sip:x SIP/2.0", 80, "INVITE sip:x SIP/2.0"},
		{"\x16\x03\x01\x02\x00", 80, `\x16\x03\x01\x02\x00`},
		{"a\r\nb", 80, `a\r\nb`},
		{"\xff\xfe", 80, `\xff\xfe`},
		{"héllo", 80, "héllo"},
		{strings.Repeat("x", 100), 10, "xxxxxxxxxx…"},
	} {
		if got := printable([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLimitedHandler(t *testing.T) {
	logs := &logLines{}
	h := NewLimitedHandler(slog.NewTextHandler(logs, nil), 5)
	log := slog.New(h).With("caller", "Transport<TCP>")
	for i := range 100 {
		log.Error("failed to parse", "data", strings.Repeat("\x00\x01binary", 5000), "i", i)
	}
	log.Info("an info line is not limited")
	n, _, longest := logs.stats()
	if n != 6 {
		t.Fatalf("%d lines, want 5 errors and the info line", n)
	}
	if longest > 600 {
		t.Fatalf("a line of %d bytes", longest)
	}
	if !strings.Contains(logs.find("failed to parse"), `\x00\x01binary`) {
		t.Fatal("binary not escaped")
	}
}

// FuzzGuardFraming feeds arbitrary bytes through a guarded TCP connection:
// it never panics, and what it passes to sipgo is a prefix of the input
// whose every message head passed the lint.
func FuzzGuardFraming(f *testing.F) {
	f.Add([]byte(optionsRequest("f1", "TCP", 0, "")))
	f.Add([]byte(optionsRequest("f2", "TCP", 4, "abcd") + "\r\n\r\n" + optionsRequest("f3", "TCP", 0, "")))
	f.Add([]byte("\x16\x03\x01\x00\x05hello"))
	f.Add([]byte(strings.Replace(optionsRequest("f4", "TCP", 2, "ab"), "Max-Forwards: 70", "Max-Forwards 70", 1)))
	f.Add([]byte(optionsRequest("f5", "TCP", 40, "short")))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := newConnGuard(ConnLimits{MessageTimeout: 5 * time.Millisecond, FirstRequestTimeout: 5 * time.Millisecond, IdleTimeout: 5 * time.Millisecond},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		client, server := net.Pipe()
		defer client.Close()
		go func() { _, _ = client.Write(data) }()
		go func() { _, _ = io.Copy(io.Discard, client) }() // 400s
		ap := netip.MustParseAddrPort("127.0.0.1:4000")
		if ok, _ := g.admit(ap.Addr()); !ok {
			t.Fatal("admit")
		}
		c := newGuardConn(server, g, streamTCP, ap, nil)
		defer c.Close()
		var out []byte
		buf := make([]byte, 32768)
		for range 10000 {
			n, err := c.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, out) {
			// Refused messages are skipped, so only check when none was.
			if _, problem := firstProblem(data); problem == "" {
				t.Fatalf("passed bytes are not the input's prefix")
			}
		}
	})
}

// firstProblem lints the messages of a stream in order, as far as they are
// complete; it returns the offset and problem of the first bad one.
func firstProblem(data []byte) (int, string) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		trim := bytes.TrimLeft(rest, "\r\n")
		off += len(rest) - len(trim)
		end := bytes.Index(trim, []byte("\r\n\r\n"))
		if end < 0 {
			return off, ""
		}
		p, _, cl := lintHead(trim[:end])
		if p != "" {
			return off, p
		}
		if cl < 0 {
			return off, "missing Content-Length"
		}
		off += end + 4 + cl
	}
	return off, ""
}

// scriptConn is a net.Conn whose reads return script again
// and again (one read per call, as a socket delivering whole segments).
type scriptConn struct {
	net.Conn
	script []byte
	off    int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	n := copy(p, c.script[c.off:])
	c.off = (c.off + n) % len(c.script)
	return n, nil
}
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptConn) Close() error                     { return nil }

// BenchmarkGuardFraming is what the guard costs per message on TCP: the
// head checked (lint) and copied out, the body passed through.
func BenchmarkGuardFraming(b *testing.B) {
	msg := []byte(strings.Replace(goodInvite, "Via: SIP/2.0/UDP", "Via: SIP/2.0/TCP", 1))
	g := newConnGuard(ConnLimits{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ap := netip.MustParseAddrPort("127.0.0.1:4000")
	g.admit(ap.Addr())
	c := newGuardConn(&scriptConn{script: msg}, g, streamTCP, ap, nil)
	buf := make([]byte, 32768)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for range b.N {
		got := 0
		for got < len(msg) {
			n, err := c.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

// The HTTP listener that serves SIP over WebSocket shares the caps: idle
// HTTP connections over the per-IP cap are closed at once, and an upgraded
// connection counts once, not twice.
func TestHTTPListenerSharesCaps(t *testing.T) {
	a, _ := startGuardedAgent(t, ConnLimits{MaxPerIP: 3})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: a.WebSocketHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(a.GuardListener(raw)) }()
	defer hs.Close()
	host := raw.Addr().String()
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == 3 }, "three HTTP connections counted")
	over, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if closed, _ := closedWithin(over, 2*time.Second); !closed {
		t.Fatal("an HTTP connection over the per-IP cap was kept")
	}
	for _, c := range conns {
		c.Close()
	}
	waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == 0 }, "closed HTTP connections released")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, err := dialWS(ctx, host, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := wsutil.WriteClientText(ws, []byte(optionsRequest("http-cap", "WS", 0, ""))); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if msg, err := wsutil.ReadServerText(ws); err != nil || !bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
		t.Fatalf("OPTIONS over WS: %q %v", msg, err)
	}
	if n := a.guard.open(); n != 1 {
		t.Fatalf("an upgraded connection counts %d, want 1", n)
	}
	ws.Close()
	waitUntil(t, 2*time.Second, func() bool { return a.guard.open() == 0 }, "the WebSocket connection released")
}

func TestCapKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := capKey(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("capKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
