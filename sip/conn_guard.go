package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Connection policy for the stream transports (TCP, TLS, WebSocket):
// every connection a peer opens passes through a guardListener and is
// read through a guardConn, which sipgo then reads as if it were the
// socket. The guard enforces the deadlines, caps and framing rules below
// and answers or closes what sipgo would otherwise drop or hold silently.

// ConnLimits bounds the TCP, TLS and WebSocket connections peers open to
// the agent. The zero value of each field means its default; a negative
// value switches that limit off.
type ConnLimits struct {
	// HandshakeTimeout bounds a TLS handshake (default 10 s).
	HandshakeTimeout time.Duration
	// FirstRequestTimeout is how long a new connection may stay open
	// without delivering a complete SIP message (default 10 s; CRLF
	// keep-alives do not count).
	FirstRequestTimeout time.Duration
	// MessageTimeout bounds one message from its first byte to its last,
	// so a Content-Length larger than what is sent closes the connection
	// instead of holding it (default 10 s; TCP and TLS).
	MessageTimeout time.Duration
	// IdleTimeout closes a connection that carried no SIP message for this
	// long, unless a live registration or dialog uses it (default 120 s,
	// Kamailio's tcp_connection_lifetime).
	IdleTimeout time.Duration
	// MaxPerIP caps the open connections from one IP address (an IPv6
	// /64) over all stream transports and HTTP (default 256).
	MaxPerIP int
	// MaxTotal caps all open inbound stream connections (default a quarter
	// of the process's descriptor limit, at least 64), so connections
	// cannot take the descriptors calls need for RTP.
	MaxTotal int
}

// withDefaults fills in the zero fields.
func (l ConnLimits) withDefaults() ConnLimits {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.HandshakeTimeout, 10*time.Second)
	def(&l.FirstRequestTimeout, 10*time.Second)
	def(&l.MessageTimeout, 10*time.Second)
	def(&l.IdleTimeout, 120*time.Second)
	if l.MaxPerIP == 0 {
		l.MaxPerIP = 256
	}
	if l.MaxTotal == 0 {
		l.MaxTotal = max(64, int(descriptorLimit()/4))
	}
	return l
}

// streamKind is the transport a guarded connection carries.
type streamKind uint8

const (
	streamTCP streamKind = iota
	streamTLS
	streamWS
	streamHTTP // the HTTP listener SIP over WebSocket is served on
)

func (k streamKind) String() string {
	switch k {
	case streamTCP:
		return "TCP"
	case streamTLS:
		return "TLS"
	case streamWS:
		return "WS"
	case streamHTTP:
		return "HTTP"
	}
	return fmt.Sprintf("streamKind(%d)", uint8(k))
}

// connGuard is the agent-wide state of the policy: the limits, the count
// of open connections per IP, and the rate-limited log.
type connGuard struct {
	limits ConnLimits
	log    *slog.Logger
	// inUse reports whether a live registration or dialog reaches the peer
	// through this connection (the agent's registrar and legs).
	inUse func(kind streamKind, remote netip.AddrPort) bool
	// hint is the address to name when TLS arrives on the TCP port and
	// the other way round.
	tcpAddr, tlsAddr func() netip.AddrPort

	logLimits [numLogTopics]logThrottle

	mu    sync.Mutex
	perIP map[netip.Addr]int
	total int
	ws    map[string]*guardConn // WebSocket connections by remote address, for the read filter
}

func newConnGuard(limits ConnLimits, log *slog.Logger) *connGuard {
	g := &connGuard{limits: limits.withDefaults(), log: log, perIP: map[netip.Addr]int{}, ws: map[string]*guardConn{},
		inUse:   func(streamKind, netip.AddrPort) bool { return false },
		tcpAddr: func() netip.AddrPort { return netip.AddrPort{} },
		tlsAddr: func() netip.AddrPort { return netip.AddrPort{} }}
	for i := range g.logLimits {
		g.logLimits[i] = logThrottle{interval: time.Second, burst: 10}
	}
	return g
}

// logTopic groups the guard's log lines; each topic has its own rate
// limit, so a flood of one kind does not hide the others.
type logTopic uint8

const (
	topicRefused   logTopic = iota // over a cap, foreign origin, not an upgrade
	topicTimeout                   // first-request and message deadlines
	topicTLS                       // handshake failures, TLS on the TCP port
	topicMalformed                 // bad framing on a stream
	numLogTopics
)

func (t logTopic) String() string {
	switch t {
	case topicRefused:
		return "refused"
	case topicTimeout:
		return "timeout"
	case topicTLS:
		return "tls"
	case topicMalformed:
		return "malformed"
	}
	return fmt.Sprintf("logTopic(%d)", uint8(t))
}

// logf writes one policy line unless its topic's rate limit (10 a second
// over all connections) holds it back; the next line of the topic that
// passes says how many were held.
func (g *connGuard) logf(topic logTopic, level slog.Level, msg string, args ...any) {
	ok, held := g.logLimits[topic].allow(time.Now())
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "suppressed_before", held)
	}
	g.log.Log(context.Background(), level, msg, args...)
}

// admit counts a new connection from ip, or refuses it when a cap is
// reached (and says which).
func (g *connGuard) admit(ip netip.Addr) (ok bool, why string) {
	ip = capKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.limits.MaxTotal > 0 && g.total >= g.limits.MaxTotal {
		return false, "total connection limit reached"
	}
	if g.limits.MaxPerIP > 0 && g.perIP[ip] >= g.limits.MaxPerIP {
		return false, "per-IP connection limit reached"
	}
	g.perIP[ip]++
	g.total++
	return true, ""
}

func (g *connGuard) release(ip netip.Addr) {
	ip = capKey(ip)
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.perIP[ip]; n <= 1 {
		delete(g.perIP, ip)
	} else {
		g.perIP[ip] = n - 1
	}
	g.total--
}

// capKey is what the per-IP cap counts: the IPv4 address, or the /64 of
// an IPv6 one (a single host commonly holds a whole /64).
func capKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// open returns the number of inbound stream connections now open.
func (g *connGuard) open() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

func (g *connGuard) wsConn(remote string) *guardConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ws[remote]
}

// guardListener accepts connections for sipgo: it never returns an error
// but net.ErrClosed (sipgo's accept loop ends on any error), backs off
// when accept fails (out of descriptors), and refuses connections over
// the caps.
type guardListener struct {
	net.Listener
	g      *connGuard
	kind   streamKind
	tlsCfg *tls.Config

	once   sync.Once
	closed chan struct{}

	// Accept runs in sipgo's one accept goroutine per listener.
	failures int
	lastLog  time.Time
}

func newGuardListener(l net.Listener, g *connGuard, kind streamKind, tlsCfg *tls.Config) *guardListener {
	return &guardListener{Listener: l, g: g, kind: kind, tlsCfg: tlsCfg, closed: make(chan struct{})}
}

func (l *guardListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *guardListener) Accept() (net.Conn, error) {
	backoff := time.Duration(0)
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// Out of descriptors (EMFILE/ENFILE) or a connection aborted
			// before we took it: wait and retry, as net/http does; never
			// give up listening. One line when it starts (and every 30 s
			// while it lasts), one when it ends.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.failures++
			if l.failures == 1 || time.Since(l.lastLog) >= 30*time.Second {
				l.lastLog = time.Now()
				args := []any{"transport", l.kind.String(), "error", err, "failures", l.failures, "open_connections", l.g.open()}
				if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
					args = append(args, "hint", fmt.Sprintf("out of file descriptors (limit %d); lower ConnLimits.MaxTotal or raise the limit", descriptorLimit()))
				}
				l.g.log.Error("sip: accept failing; backing off and retrying", args...)
			}
			select {
			case <-l.closed:
				return nil, net.ErrClosed
			case <-time.After(backoff):
			}
			continue
		}
		if l.failures > 0 {
			l.g.log.Info("sip: accepting connections again", "transport", l.kind.String(), "failed_accepts", l.failures)
			l.failures = 0
		}
		backoff = 0
		remote := addrPortOf(raw.RemoteAddr())
		if ok, why := l.g.admit(remote.Addr()); !ok {
			l.g.logf(topicRefused, slog.LevelWarn, "sip: connection refused", "transport", l.kind.String(), "remote", remote.String(), "reason", why,
				"max_per_ip", l.g.limits.MaxPerIP, "max_total", l.g.limits.MaxTotal)
			_ = raw.Close()
			continue
		}
		if l.kind == streamHTTP {
			return &countedConn{Conn: raw, g: l.g, ip: remote.Addr()}, nil
		}
		return newGuardConn(raw, l.g, l.kind, remote, l.tlsCfg), nil
	}
}

// GuardListener applies the agent's connection caps (Config.Conns
// MaxPerIP and MaxTotal, shared with the SIP transports) and its accept
// back-off to another listener, such as the HTTP server's that serves
// WebSocketHandler: connections over a cap are closed at once, and accept
// errors (out of descriptors) are retried, not returned. Deadlines stay the
// HTTP server's own (ReadHeaderTimeout, IdleTimeout).
func (a *Agent) GuardListener(l net.Listener) net.Listener {
	return newGuardListener(l, a.guard, streamHTTP, nil)
}

// countedConn holds a place under the caps until it is closed, or until
// a WebSocket upgrade hands the place to the guarded SIP connection.
type countedConn struct {
	net.Conn
	g    *connGuard
	ip   netip.Addr
	once sync.Once
}

func (c *countedConn) release() { c.once.Do(func() { c.g.release(c.ip) }) }

func (c *countedConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Framing limits on stream transports.
const (
	// maxStreamMessage is the largest message we accept on a stream
	// (sipgo's own limit).
	maxStreamMessage = 65535
	// maxStartLine is how far we look for the end of the first line.
	maxStartLine = 8192
	// maxBadMessages is how many malformed messages a connection that
	// carried good ones may send (each answered 400) before it is closed.
	maxBadMessages = 3
)

type readState uint8

const (
	stateIdle    readState = iota // between messages
	stateHead                     // inside a message's start line and headers
	stateBody                     // passing a body through
	stateDiscard                  // skipping the body of a refused message
)

// guardConn is one inbound stream connection as sipgo sees it. On TCP and
// TLS it frames the byte stream itself: each message's head is checked
// (lint) before sipgo's parser sees a byte of it, bodies are passed
// through as counted by Content-Length, and every read of the socket has
// a deadline set by where the connection is (handshake, first request,
// inside a message, idle). A WebSocket connection is read through (sipgo
// decodes the frames and the agent's read filter checks each message)
// with the same deadlines; wsFrames follows the frame boundaries to know
// when a message is in progress.
//
// Read is called only from sipgo's one read goroutine per connection, so
// the read state needs no lock.
type guardConn struct {
	net.Conn
	g      *connGuard
	kind   streamKind
	remote netip.AddrPort
	tls    *tls.Conn

	accepted  time.Time
	handshook bool

	buf     []byte // bytes read from the socket not yet given to sipgo
	ready   int    // how many bytes at the front of buf are checked and may go to sipgo
	state   readState
	left    int // body bytes still to pass (stateBody) or skip (stateDiscard)
	msgAt   time.Time
	lastMsg time.Time
	good    int // complete messages passed to sipgo (or seen by the WS filter)
	bad     int
	frames  wsFrames // WebSocket only

	closeOnce sync.Once
}

func newGuardConn(raw net.Conn, g *connGuard, kind streamKind, remote netip.AddrPort, tlsCfg *tls.Config) *guardConn {
	c := &guardConn{Conn: raw, g: g, kind: kind, remote: remote, accepted: time.Now()}
	if kind == streamTLS {
		c.tls = tls.Server(raw, tlsCfg)
		c.Conn = c.tls
	} else {
		c.handshook = true
	}
	if kind == streamWS {
		g.mu.Lock()
		g.ws[raw.RemoteAddr().String()] = c
		g.mu.Unlock()
	}
	return c
}

// Close closes the connection once and returns its place under the caps.
func (c *guardConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		if c.kind == streamWS {
			c.g.mu.Lock()
			if c.g.ws[c.RemoteAddr().String()] == c {
				delete(c.g.ws, c.RemoteAddr().String())
			}
			c.g.mu.Unlock()
		}
		c.g.release(c.remote.Addr())
	})
	return err
}

// Write sends with a deadline (MessageTimeout), so a peer that stops
// reading cannot hold a transaction's goroutine for ever.
func (c *guardConn) Write(p []byte) (int, error) {
	if t := c.g.limits.MessageTimeout; t > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(t))
	}
	return c.Conn.Write(p)
}

// SetReadDeadline is ignored: the guard sets the deadline of every read
// itself.
func (c *guardConn) SetReadDeadline(time.Time) error { return nil }

// Read hands sipgo the next checked bytes of the stream.
func (c *guardConn) Read(p []byte) (int, error) {
	if !c.handshook {
		if err := c.handshake(); err != nil {
			return 0, err
		}
	}
	if c.kind == streamWS {
		return c.readThrough(p)
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[:min(c.ready, len(p))])
			c.consume(n)
			c.ready -= n
			return n, nil
		}
		if err := c.advance(); err != nil {
			return 0, err
		}
		if c.ready > 0 {
			continue
		}
		if c.state == stateBody && len(c.buf) == 0 {
			// Bodies go straight from the socket to sipgo.
			n, err := c.readRaw(p[:min(len(p), c.left)])
			if n > 0 {
				c.left -= n
				if c.left == 0 {
					c.messageDone()
				}
				return n, nil
			}
			return 0, err
		}
		if err := c.fill(); err != nil {
			return 0, err
		}
	}
}

// consume drops n bytes from the front of buf.
func (c *guardConn) consume(n int) {
	rest := copy(c.buf, c.buf[n:])
	c.buf = c.buf[:rest]
}

// fill reads more bytes from the socket into buf.
func (c *guardConn) fill() error {
	if c.buf == nil {
		c.buf = make([]byte, 0, 4096)
	}
	if len(c.buf) == cap(c.buf) {
		if cap(c.buf) >= maxStreamMessage+4 {
			return errors.New("sip: stream buffer full") // checkHead refuses before this
		}
		nb := make([]byte, len(c.buf), min(2*cap(c.buf), maxStreamMessage+4))
		copy(nb, c.buf)
		c.buf = nb
	}
	n, err := c.readRaw(c.buf[len(c.buf):cap(c.buf)])
	c.buf = c.buf[:len(c.buf)+n]
	if n > 0 {
		return nil
	}
	return err
}

// readRaw reads the socket with the deadline of the current state. An
// expired deadline closes the connection (and reads as io.EOF, which
// sipgo takes as a normal close) unless the connection is in use.
func (c *guardConn) readRaw(p []byte) (int, error) {
	for {
		dl, what := c.deadline()
		_ = c.Conn.SetReadDeadline(dl)
		n, err := c.Conn.Read(p)
		if err == nil || n > 0 {
			return n, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return 0, err
		}
		if what == "idle" && c.g.inUse(c.kind, c.remote) {
			c.lastMsg = time.Now() // a registration or dialog needs it: keep it
			continue
		}
		c.expire(what)
		return 0, io.EOF
	}
}

// deadline is when the current read must give up, and why.
func (c *guardConn) deadline() (time.Time, string) {
	l := c.g.limits
	switch {
	case c.state == stateHead || c.state == stateBody || c.state == stateDiscard:
		if l.MessageTimeout > 0 {
			return c.msgAt.Add(l.MessageTimeout), "message"
		}
	case c.good == 0:
		if l.FirstRequestTimeout > 0 {
			return c.accepted.Add(l.FirstRequestTimeout), "first request"
		}
	default:
		if l.IdleTimeout > 0 {
			return c.lastMsg.Add(l.IdleTimeout), "idle"
		}
	}
	return time.Time{}, ""
}

func (c *guardConn) expire(what string) {
	args := []any{"transport", c.kind.String(), "remote", c.remote.String()}
	switch what {
	case "message":
		args = append(args, "after", c.g.limits.MessageTimeout)
		if c.state == stateBody || c.state == stateDiscard {
			args = append(args, "body_bytes_missing", c.left)
		}
		if c.kind == streamWS {
			args = append(args, "frame_bytes_missing", c.frames.left)
		}
		c.g.logf(topicTimeout, slog.LevelWarn, "sip: closing connection: message incomplete within the deadline (Content-Length larger than what was sent?)", args...)
	case "first request":
		c.g.logf(topicTimeout, slog.LevelInfo, "sip: closing connection: no SIP request within the deadline", append(args, "after", c.g.limits.FirstRequestTimeout)...)
	default:
		c.g.log.Debug("sip: closing idle connection", append(args, "idle", c.g.limits.IdleTimeout)...)
	}
	_ = c.Close()
}

// readThrough reads a WebSocket connection, following its frames for
// the deadlines: inside a frame or fragmented message the message
// deadline applies.
func (c *guardConn) readThrough(p []byte) (int, error) {
	n, err := c.readRaw(p)
	if n > 0 {
		was := c.frames.inMessage()
		c.frames.feed(p[:n])
		switch in := c.frames.inMessage(); {
		case in && !was:
			c.state, c.msgAt = stateHead, time.Now()
		case !in:
			c.state = stateIdle
		}
	}
	return n, err
}

// noteMessage records that the WebSocket read filter saw a message.
func (c *guardConn) noteMessage() { c.messageDone() }

func (c *guardConn) messageDone() {
	c.state = stateIdle
	c.good++
	c.lastMsg = time.Now()
}

// handshake runs the TLS handshake under HandshakeTimeout and explains a
// failure in one (rate-limited) line.
func (c *guardConn) handshake() error {
	ctx := context.Background()
	if t := c.g.limits.HandshakeTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.accepted.Add(t))
		defer cancel()
	}
	err := c.tls.HandshakeContext(ctx)
	if err == nil {
		c.handshook = true
		return nil
	}
	args := []any{"remote", c.remote.String(), "error", err}
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		args = append(args, "hint", fmt.Sprintf("no TLS handshake within %s", c.g.limits.HandshakeTimeout))
	case errors.As(err, &rec):
		hint := "the client did not speak TLS"
		if t := c.g.tcpAddr(); t.IsValid() && looksLikeSIP(rec.RecordHeader[:]) {
			hint = fmt.Sprintf("plain SIP sent to the TLS port; use port %d for SIP over TCP", t.Port())
		}
		args = append(args, "hint", hint)
	case isRemoteAlert(err):
		args = append(args, "side", "client refused our certificate",
			"hint", "the client does not trust our certificate (install the CA or the certificate on the phone) or the name it dialled does not match the certificate's names")
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		args = append(args, "hint", "the client closed the connection during the handshake; it may not trust our certificate")
	default:
		args = append(args, "side", "we refused the client", "hint", "check the client's TLS versions and cipher suites (TLS 1.2+ required)")
	}
	c.g.logf(topicTLS, slog.LevelWarn, "sip: TLS handshake failed", args...)
	_ = c.Close()
	return io.EOF
}

// isRemoteAlert reports an alert the peer sent ("remote error: tls: bad
// certificate"); crypto/tls does not export that error's type.
func isRemoteAlert(err error) bool {
	return bytes.Contains([]byte(err.Error()), []byte("remote error: tls:"))
}

func looksLikeSIP(b []byte) bool {
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return len(b) > 0
}

// advance checks buffered bytes and marks the next ones ready, or returns
// an error when the connection must end.
func (c *guardConn) advance() error {
	for len(c.buf) > c.ready {
		data := c.buf[c.ready:]
		switch c.state {
		case stateIdle:
			if data[0] == '\r' || data[0] == '\n' {
				// CRLF keep-alives (RFC 5626 3.5.1) go to sipgo alone, at
				// most a double CRLF at a time, which it answers.
				k := 0
				for k < len(data) && k < 4 && (data[k] == '\r' || data[k] == '\n') {
					k++
				}
				if c.ready == 0 {
					c.ready = k
				}
				return nil
			}
			if c.ready > 0 {
				return nil
			}
			if data[0] == 0x16 && c.kind == streamTCP && c.good == 0 && c.bad == 0 {
				hint := "TLS is not enabled on this server"
				if t := c.g.tlsAddr(); t.IsValid() {
					hint = fmt.Sprintf("use port %d for SIP over TLS", t.Port())
				}
				c.g.logf(topicTLS, slog.LevelWarn, "sip: TLS sent to the TCP port; closing", "remote", c.remote.String(), "hint", hint)
				_ = c.Close()
				return io.EOF
			}
			c.state = stateHead
			c.msgAt = time.Now()
		case stateHead:
			if c.ready > 0 {
				return nil
			}
			return c.checkHead()
		case stateBody:
			k := min(len(data), c.left)
			c.ready += k
			c.left -= k
			if c.left == 0 {
				c.messageDone()
			}
			return nil
		case stateDiscard:
			k := min(len(data), c.left)
			copy(c.buf[c.ready:], c.buf[c.ready+k:])
			c.buf = c.buf[:len(c.buf)-k]
			c.left -= k
			if c.left == 0 {
				c.state = stateIdle
			}
		}
	}
	return nil
}

// checkHead looks at a message's head in buf[0:] once it can: the start
// line as soon as it is complete, the headers once the empty line
// arrives. Returns nil to wait for more bytes.
func (c *guardConn) checkHead() error {
	data := c.buf
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		if len(data) > maxStartLine {
			return c.refuse(data, "start line too long", false, true)
		}
		return nil
	}
	if problem, isReq := lintStartLine(bytes.TrimRight(data[:nl], "\r")); problem != "" {
		return c.refuse(data, problem, isReq, true)
	}
	end, sep := bytes.Index(data, []byte("\r\n\r\n")), 4
	if end < 0 {
		end, sep = bytes.Index(data, []byte("\n\n")), 2
	}
	if end < 0 {
		if len(data) > maxStreamMessage {
			return c.refuse(data, problemTooLarge, true, true)
		}
		return nil
	}
	head := data[:end]
	problem, isReq, cl := lintHead(head)
	switch {
	case problem == "" && cl < 0:
		// RFC 3261 18.3: mandatory on streams; without it there is no
		// message boundary.
		return c.refuse(head, "missing Content-Length", isReq, true)
	case problem == "" && end+sep+cl > maxStreamMessage:
		return c.refuse(head, problemTooLarge, isReq, true)
	case problem != "":
		// The boundary is known when Content-Length is: answer, skip the
		// message and go on with a connection that has behaved before.
		c.bad++
		if cl < 0 {
			cl = scanContentLength(head) // lintHead stops at the first problem
		}
		known := cl >= 0 && end+sep+cl <= maxStreamMessage
		closeIt := !known || c.good == 0 || c.bad > maxBadMessages
		if err := c.refuse(head, problem, isReq, closeIt); err != nil {
			return err
		}
		c.consume(end + sep)
		c.state, c.left = stateDiscard, cl
		if cl == 0 {
			c.state = stateIdle
		}
		return nil
	}
	c.ready = end + sep
	c.state, c.left = stateBody, cl
	if cl == 0 {
		c.messageDone()
	}
	return nil
}

// scanContentLength finds a well-formed Content-Length in a head that
// failed the lint, or returns -1.
func scanContentLength(head []byte) int {
	_, rest := nextLine(head)
	n := -1
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !hdrIs(bytes.TrimSpace(name), "content-length", "l") {
			continue
		}
		value = bytes.TrimSpace(value)
		if !allDigits(value) || len(value) > 9 {
			return -1
		}
		v, _ := strconv.Atoi(string(value))
		if n >= 0 && v != n {
			return -1
		}
		n = v
	}
	return n
}

// refuse answers a malformed request with 400 (513, 505) when it has a
// Via to answer to, logs one line, and closes the connection when asked.
func (c *guardConn) refuse(head []byte, problem string, isRequest, closeIt bool) error {
	line, _ := nextLine(head)
	answered := false
	if isRequest {
		if res := badRequest(head, problem); res != nil {
			answered = true
			_ = c.Conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Conn.Write(res); err != nil {
				answered = false
			}
		}
	}
	c.g.logf(topicMalformed, slog.LevelWarn, "sip: malformed message on a stream connection", "transport", c.kind.String(), "remote", c.remote.String(),
		"problem", problem, "start", printable(line, 80), "answered", answered, "closing", closeIt)
	if closeIt {
		_ = c.Close()
		return io.EOF
	}
	return nil
}

// connInUse reports whether a live registration or dialog reaches the peer
// at remote over a connection of kind: such a connection is the only way
// back to a phone behind NAT, so it is never closed as idle.
func (a *Agent) connInUse(kind streamKind, remote netip.AddrPort) bool {
	tr := kind.String()
	if r := a.cfg.Registrar; r != nil && r.usesConnection(tr, remote) {
		return true
	}
	a.subs.mu.Lock()
	for _, s := range a.subs.byKey { // a subscriber's NOTIFYs go back over its connection
		if sameConnection(s.transport, s.destination, tr, remote) {
			a.subs.mu.Unlock()
			return true
		}
	}
	a.subs.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.uas {
		if l.uas != nil && sameConnection(l.uas.InviteRequest.Transport(), l.uas.InviteRequest.Source(), tr, remote) {
			return true
		}
	}
	for _, l := range a.uac {
		if l.uac != nil && sameConnection(l.uac.InviteRequest.Transport(), l.uac.InviteRequest.Destination(), tr, remote) {
			return true
		}
	}
	return false
}

func sameConnection(transport, addr, wantTransport string, want netip.AddrPort) bool {
	if !strings.EqualFold(transport, wantTransport) {
		return false
	}
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap() == want.Addr() && ap.Port() == want.Port()
}

// usesConnection reports whether an unexpired binding was registered from
// src over transport.
func (r *Registrar) usesConnection(transport string, src netip.AddrPort) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, bs := range r.bindings {
		for _, b := range bs {
			if now.Before(b.Expires) && strings.EqualFold(b.Transport, transport) &&
				b.Source.Addr().Unmap() == src.Addr() && b.Source.Port() == src.Port() {
				return true
			}
		}
	}
	return false
}
