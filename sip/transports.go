package sip

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// TLS (RFC 3261 26.2) and SIP over WebSocket (RFC 7118) next to UDP/TCP.

// transportNames are the transports the agent sends over; each has its
// own sipgo client so that the Via sent-by it writes names that
// transport's listening port.
var transportNames = []string{"UDP", "TCP", "TLS", "WS", "WSS"}

// newClients creates one sipgo client and dialog UA per transport. sipgo
// puts a client's single port into the Via of every request it builds
// (including ACK, BYE and CANCEL inside dialogs), so one client for all
// transports told a TLS peer to answer on the UDP/TCP port: a phone that
// opens a new connection for its responses (Linphone) then fails its
// handshake on the plain TCP listener.
func (a *Agent) newClients(ua *sipgo.UserAgent, advertise netip.Addr) error {
	a.clients = make(map[string]*sipgo.Client, len(transportNames))
	a.duas = make(map[string]*sipgo.DialogUA, len(transportNames))
	for _, tr := range transportNames {
		// Port 0 (WebSocket, or TLS when it is off) lets the transport
		// layer write the connection's own local port, and host "" its
		// local IP: over a connection that is the address the peer
		// reaches us at (loopback for a local phone, the LAN address for
		// a LAN one), which one advertised address cannot be on a host
		// with several. UDP has one socket, maybe on 0.0.0.0: it names the
		// advertised address, and so does everything with a public IP.
		host := advertise.String()
		if tr != "UDP" && !a.cfg.PublicIP.IsValid() {
			host = ""
		}
		opts := []sipgo.ClientOption{sipgo.WithClientHostname(host),
			sipgo.WithClientPort(a.listenPort(tr)), sipgo.WithClientLogger(a.log)}
		if tr == "UDP" {
			// Send from the listening socket: the source port is the Via
			// port, and a NAT in front of the phone sees one flow.
			opts = append(opts, sipgo.WithClientConnectionAddr(a.udpKey))
		}
		c, err := sipgo.NewClient(ua, opts...)
		if err != nil {
			return fmt.Errorf("sip: %s client: %w", tr, err)
		}
		a.clients[tr] = c
		a.duas[tr] = &sipgo.DialogUA{Client: c, ContactHDR: *a.contactFor(advertise, tr), RewriteContact: true}
	}
	return nil
}

// clientFor is the sipgo client for requests sent over transport.
func (a *Agent) clientFor(transport string) *sipgo.Client {
	if c, ok := a.clients[strings.ToUpper(transport)]; ok {
		return c
	}
	return a.clients["UDP"]
}

// duaFor is the dialog UA for dialogs over transport.
func (a *Agent) duaFor(transport string) *sipgo.DialogUA {
	if d, ok := a.duas[strings.ToUpper(transport)]; ok {
		return d
	}
	return a.duas["UDP"]
}

// listenPort is the port we listen on for transport: what Via sent-by and
// Contact carry. 0 for WebSocket (served on the application's HTTP port;
// peers never connect back to it) and for TLS when it is off.
func (a *Agent) listenPort(transport string) int {
	switch strings.ToUpper(transport) {
	case "TCP":
		return int(a.tcpAddr.Port())
	case "TLS":
		return int(a.tlsAddr.Port())
	case "WS", "WSS":
		return 0
	}
	return int(a.udpAddr.Port())
}

// liveConnection reports whether a connection over transport (TCP, TLS,
// WS, WSS) to addr is open, e.g. the one a phone registered over.
func (a *Agent) liveConnection(transport, addr string) bool {
	c, err := a.ua.TransportLayer().GetConnection(transport, addr)
	if err != nil || c == nil {
		return false
	}
	_, _ = c.TryClose() // GetConnection took a reference
	return true
}

// serverTLSConfig loads the configured certificate or, without one, the
// development certificate (see DevCertificate) and logs its SHA-256
// fingerprint, which phones can pin.
func (a *Agent) serverTLSConfig() (*tls.Config, error) {
	if a.cfg.TLSConfig != nil {
		return a.cfg.TLSConfig, nil
	}
	if a.cfg.TLSCertFile != "" || a.cfg.TLSKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCertFile, a.cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("sip: TLS certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	names, ips := a.devCertNames()
	dir := ""
	if a.cfg.DataDir != "" {
		dir = filepath.Join(a.cfg.DataDir, "tls")
	}
	cert, created, err := DevCertificate(dir, names, ips)
	if errors.Is(err, errDevCertNotStored) {
		a.log.Warn("sip: the development certificate cannot be kept; phones that trust it will stop at the next restart", "error", err)
		dir, err = "", nil
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Certificate[0])
	args := []any{"sha256", hex.EncodeToString(sum[:])}
	if dir != "" {
		args = append(args, "file", filepath.Join(dir, devCertFile), "new", created)
	}
	a.log.Warn("sip: TLS uses a self-signed development certificate; configure a real one for production", args...)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// devCertNames are the names and addresses the development certificate
// must cover: localhost, the host name, TLSHostnames, loopback, the
// listen and public addresses and the address we advertise.
func (a *Agent) devCertNames() ([]string, []netip.Addr) {
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		names = append(names, h)
	}
	names = append(names, a.cfg.TLSHostnames...)
	ips := []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback(), a.advertiseIP(netip.Addr{})}
	for _, hp := range []string{a.cfg.TLSAddr, a.cfg.ListenAddr} {
		if host, _, err := net.SplitHostPort(hp); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil {
				ips = append(ips, ip)
			}
		}
	}
	if a.cfg.PublicIP.IsValid() {
		ips = append(ips, a.cfg.PublicIP)
	}
	return names, ips
}

// TLSCertificate returns the certificate the TLS listener presents (nil
// without TLS), e.g. for a test client to trust.
func (a *Agent) TLSCertificate() *x509.Certificate {
	if a.tlsConf == nil || len(a.tlsConf.Certificates) == 0 {
		return nil
	}
	c := a.tlsConf.Certificates[0]
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	return leaf
}

// TLSCertificatePEM is the TLS listener's certificate chain in PEM (nil
// without TLS): what a phone imports to trust the server.
func (a *Agent) TLSCertificatePEM() []byte {
	if a.tlsConf == nil || len(a.tlsConf.Certificates) == 0 {
		return nil
	}
	return CertificatePEM(a.tlsConf.Certificates[0])
}

// TLSAddr is the TLS listener's address (invalid when TLS is off).
func (a *Agent) TLSAddr() netip.AddrPort { return a.tlsAddr }

// WebSocketHandler serves SIP over WebSocket (RFC 7118) on an HTTP server
// the application runs: mount it on a path (e.g. /sip). Requests that are
// not WebSocket upgrades offering the "sip" subprotocol get 400; a
// browser's upgrade from another origin than the server's own or
// Config.WebSocketOrigins gets 403; a client over the connection caps
// gets 503. Upgraded connections follow Config.Conns.
func (a *Agent) WebSocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || !offersSIP(r.Header.Values("Sec-WebSocket-Protocol")) {
			a.guard.logf(topicRefused, slog.LevelInfo, "sip: HTTP request on the WebSocket path is not a SIP WebSocket upgrade", "remote", r.RemoteAddr)
			http.Error(w, "expected a WebSocket upgrade with subprotocol sip", http.StatusBadRequest)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" && !originAllowed(origin, r.Host, a.cfg.WebSocketOrigins) {
			a.guard.logf(topicRefused, slog.LevelWarn, "sip: WebSocket upgrade from a foreign origin refused", "remote", r.RemoteAddr, "origin", printable([]byte(origin), 100),
				"host", printable([]byte(r.Host), 100), "hint", "add the origin to WebSocketOrigins if this page may use the server")
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		remote := addrPortOf(netAddrString(r.RemoteAddr))
		if ok, why := a.guard.admit(remote.Addr()); !ok {
			a.guard.logf(topicRefused, slog.LevelWarn, "sip: connection refused", "transport", "WS", "remote", r.RemoteAddr, "reason", why)
			http.Error(w, "too many connections", http.StatusServiceUnavailable)
			return
		}
		admitted := true
		defer func() {
			if admitted {
				a.guard.release(remote.Addr())
			}
		}()
		a.mu.Lock()
		wsl := a.wsListener
		a.mu.Unlock()
		if wsl == nil {
			http.Error(w, "SIP agent not listening", http.StatusServiceUnavailable)
			return
		}
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
			return
		}
		conn, rw, err := hj.Hijack()
		if err != nil {
			a.log.Warn("sip: WebSocket hijack failed", "error", err)
			return
		}
		// sipgo's WS transport performs the handshake itself on a raw
		// connection: give it the request again, then what follows it.
		var head strings.Builder
		fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.Method, r.URL.RequestURI(), r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				fmt.Fprintf(&head, "%s: %s\r\n", k, v)
			}
		}
		head.WriteString("\r\n")
		if hc, ok := conn.(*countedConn); ok {
			hc.release() // counted as a WebSocket connection from now on
		}
		pc := &replayConn{Conn: conn, pending: []byte(head.String()), rest: rw.Reader}
		admitted = false // the guarded connection releases its place when it closes
		gc := newGuardConn(pc, a.guard, streamWS, remote, nil)
		gc.frames.skip = len(pc.pending) // the replayed upgrade request precedes the frames
		if !wsl.push(gc) {
			_ = gc.Close()
		}
	})
}

// originAllowed implements the WebSocket Origin policy (RFC 6455 10.2):
// same origin (the Origin's host:port equals the request's Host) or one
// listed in allowed ("*" allows all; entries are full origins such as
// "https://app.example.com" or bare hosts).
func originAllowed(origin, host string, allowed []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, host) || strings.EqualFold(hostWithDefaultPort(u), host) {
		return true
	}
	for _, a := range allowed {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "*" || strings.EqualFold(a, origin) || strings.EqualFold(a, u.Host) {
			return true
		}
	}
	return false
}

// hostWithDefaultPort returns the origin's host with its scheme's default
// port made explicit (an Origin omits it; a Host header may not).
func hostWithDefaultPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		return net.JoinHostPort(u.Hostname(), "443")
	case "http", "ws":
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

func netAddrString(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

func offersSIP(values []string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "sip") {
				return true
			}
		}
	}
	return false
}

// replayConn reads pending bytes, then whatever the HTTP server had
// buffered, then the connection.
type replayConn struct {
	net.Conn
	pending []byte
	rest    *bufio.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.rest != nil && c.rest.Buffered() > 0 {
		return c.rest.Read(p)
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed with hijacked HTTP connections.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn, 64), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case <-l.closed:
		return false
	case l.conns <- c:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// fixContact rewrites the Contact of a request from a client that cannot
// be reached at the address it claims: WebSocket clients (RFC 7118 Contacts
// are often *.invalid) and clients behind NAT whose Contact holds a
// private address other than the one the request came from. In-dialog
// requests then go back over the same connection or NAT binding.
func fixContact(req *sip.Request) {
	c := req.Contact()
	if c == nil || c.Address.Wildcard {
		return
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return
	}
	tr := strings.ToUpper(req.Transport())
	host := c.Address.Host
	ip, ipErr := netip.ParseAddr(host)
	natted := ipErr == nil && ip.Unmap() != src.Addr().Unmap() && (ip.IsPrivate() || ip.IsLoopback()) && !src.Addr().Unmap().IsPrivate() && !src.Addr().Unmap().IsLoopback()
	if tr == "WS" || tr == "WSS" || strings.HasSuffix(strings.ToLower(host), ".invalid") || natted {
		c.Address.Host = src.Addr().Unmap().String()
		c.Address.Port = int(src.Port())
	}
}
