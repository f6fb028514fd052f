package sip

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TLS (RFC 3261 26.2) and SIP over WebSocket (RFC 7118) next to UDP/TCP.

// serverTLSConfig loads the configured certificate or, without one,
// generates a self-signed certificate for development and logs its
// SHA-256 fingerprint (phones can pin it).
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
	cert, err := SelfSignedCertificate(a.advertiseIP(netip.Addr{}))
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Certificate[0])
	a.log.Warn("sip: TLS uses a self-signed development certificate; configure a real one for production",
		"sha256", hex.EncodeToString(sum[:]))
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// SelfSignedCertificate makes an ECDSA P-256 certificate valid for a year
// for localhost, 127.0.0.1, ::1 and ip.
func SelfSignedCertificate(ip netip.Addr) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "switchboard development"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		IsCA:         true, BasicConstraintsValid: true,
	}
	if ip.IsValid() && !ip.IsLoopback() && !ip.IsUnspecified() {
		tpl.IPAddresses = append(tpl.IPAddresses, ip.AsSlice())
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
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
