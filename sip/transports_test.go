package sip

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// startTestAgent runs an agent on loopback with UDP, TCP and TLS.
func startTestAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	cfg.TLSAddr = "127.0.0.1:0"
	if cfg.Ports == nil {
		ports, err := transport.NewPortPool(33000, 33099)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Ports = ports
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		sip.SetDefaultLogger(cfg.Logger)
	}
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// readStreamMessage reads one SIP message from a stream connection.
func readStreamMessage(t *testing.T, conn net.Conn, r *bufio.Reader) sip.Message {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var head strings.Builder
	length := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading SIP message: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
		if name, value, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(strings.TrimSpace(name), "Content-Length") || strings.TrimSpace(name) == "l") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
		if line == "\r\n" && head.Len() > 2 {
			break
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading SIP body: %v", err)
	}
	msg, err := sip.ParseMessage(append([]byte(head.String()), body...))
	if err != nil {
		t.Fatalf("parse %q: %v", head.String(), err)
	}
	return msg
}

// checkSentBy fails unless the top Via of req names transport and the
// agent's listening port for it, and the Contact the same port and
// transport.
func checkSentBy(t *testing.T, what string, via *sip.ViaHeader, contact *sip.ContactHeader, transport string, port int) {
	t.Helper()
	if via != nil && (!strings.EqualFold(via.Transport, transport) || via.Port != port || via.Host != "127.0.0.1") {
		t.Errorf("%s: Via SIP/2.0/%s %s:%d, want SIP/2.0/%s 127.0.0.1:%d", what, via.Transport, via.Host, via.Port, transport, port)
	}
	if contact == nil {
		return
	}
	tp, _ := contact.Address.UriParams.Get("transport")
	wantTP := strings.ToLower(transport)
	if wantTP == "udp" {
		wantTP = ""
	}
	if contact.Address.Port != port || tp != wantTP {
		t.Errorf("%s: Contact %s, want port %d transport %q", what, contact.Address.String(), port, wantTP)
	}
}

// An INVITE we send names, in Via and Contact, the port of the transport
// it goes over. With one port for everything (the bug), a TLS phone that
// answers on a new connection reached the plain TCP listener.
func TestOutgoingViaAndContactPerTransport(t *testing.T) {
	peerCert, _, err := DevCertificate("", nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(peerCert.Leaf)
	a := startTestAgent(t, Config{TLSRootCAs: roots})
	if a.tlsAddr.Port() == a.udpAddr.Port() {
		t.Fatal("TLS and UDP share a port; the test cannot tell them apart")
	}
	for _, tr := range []string{"UDP", "TCP", "TLS"} {
		t.Run(tr, func(t *testing.T) {
			type received struct {
				req   *sip.Request
				reply func(*sip.Response)
			}
			got := make(chan received, 1)
			var addr string
			switch tr {
			case "UDP":
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				addr = pc.LocalAddr().String()
				go func() {
					buf := make([]byte, 65535)
					_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					msg, err := sip.ParseMessage(buf[:n])
					if from.String() != a.udpAddr.String() {
						t.Errorf("UDP INVITE came from %s, not from the listening socket %s", from, a.udpAddr)
					}
					if req, ok := msg.(*sip.Request); err == nil && ok {
						got <- received{req, func(res *sip.Response) { _, _ = pc.WriteTo([]byte(res.String()), from) }}
					}
				}()
			default:
				var ln net.Listener
				if tr == "TLS" {
					ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{peerCert}})
				} else {
					ln, err = net.Listen("tcp", "127.0.0.1:0")
				}
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				addr = ln.Addr().String()
				go func() {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { conn.Close() })
					msg := readStreamMessage(t, conn, bufio.NewReader(conn))
					if req, ok := msg.(*sip.Request); ok {
						got <- received{req, func(res *sip.Response) { _, _ = conn.Write([]byte(res.String())) }}
					}
				}()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			dialErr := make(chan error, 1)
			go func() {
				_, err := a.DialURI(ctx, fmt.Sprintf("sip:peer@%s;transport=%s", addr, strings.ToLower(tr)), DialOptions{Timeout: 5 * time.Second})
				dialErr <- err
			}()
			var in received
			select {
			case in = <-got:
			case err := <-dialErr:
				t.Fatalf("dial ended before the INVITE arrived: %v", err)
			case <-ctx.Done():
				t.Fatal("no INVITE")
			}
			if in.req.Via() == nil {
				t.Fatal("INVITE without Via")
			}
			checkSentBy(t, "INVITE", in.req.Via(), in.req.Contact(), tr, a.listenPort(tr))
			in.reply(sip.NewResponseFromRequest(in.req, 486, "Busy Here", nil))
			if err := <-dialErr; !errors.Is(err, ErrBusy) {
				t.Fatalf("dial: %v, want busy", err)
			}
		})
	}
}

// rawSIP is a test peer's connection to the agent over one transport.
type rawSIP struct {
	local string // its own address, for Via and Contact
	send  func(msg string)
	read  func() sip.Message
}

func dialRawSIP(t *testing.T, a *Agent, transport, wsURL string) rawSIP {
	t.Helper()
	switch transport {
	case "UDP":
		conn, err := net.Dial("udp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return rawSIP{local: conn.LocalAddr().String(),
			send: func(msg string) { _, _ = conn.Write([]byte(msg)) },
			read: func() sip.Message {
				buf := make([]byte, 65535)
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("reading SIP over UDP: %v", err)
				}
				msg, err := sip.ParseMessage(buf[:n])
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				return msg
			}}
	case "WS":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, wsURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return rawSIP{local: conn.LocalAddr().String(),
			send: func(msg string) { _ = wsutil.WriteClientText(conn, []byte(msg)) },
			read: func() sip.Message {
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				b, err := wsutil.ReadServerText(conn)
				if err != nil {
					t.Fatalf("reading SIP over WebSocket: %v", err)
				}
				msg, err := sip.ParseMessage(b)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				return msg
			}}
	}
	var conn net.Conn
	var err error
	if transport == "TLS" {
		roots := x509.NewCertPool()
		roots.AddCert(a.TLSCertificate())
		conn, err = tls.Dial("tcp", a.TLSAddr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	} else {
		conn, err = net.Dial("tcp", a.TCPAddr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	return rawSIP{local: conn.LocalAddr().String(),
		send: func(msg string) { _, _ = conn.Write([]byte(msg)) },
		read: func() sip.Message { return readStreamMessage(t, conn, r) }}
}

// A call that comes in over each transport: our 200's Contact names that
// transport's port, and our BYE comes back over the caller's own
// connection (or to its UDP source) with that port in Via — for
// WebSocket, the HTTP port the caller connected to. A phone behind NAT,
// or one that does not listen for TLS, is reachable no other way.
func TestInDialogRequestsOverTheCallersTransport(t *testing.T) {
	legs := make(chan *Leg, 1)
	a := startTestAgent(t, Config{OnInvite: func(l *Leg) { legs <- l }})
	web := httptest.NewServer(a.WebSocketHandler())
	defer web.Close()
	webPort := netip.MustParseAddrPort(web.Listener.Addr().String()).Port()
	for i, tr := range []string{"UDP", "TCP", "TLS", "WS"} {
		t.Run(tr, func(t *testing.T) {
			peer := dialRawSIP(t, a, tr, "ws"+strings.TrimPrefix(web.URL, "http")+"/sip")
			callID := fmt.Sprintf("in-dialog-%d", i)
			target := fmt.Sprintf("sip:echo@%s;transport=%s", a.Addr(), strings.ToLower(tr))
			sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
			peer.send(fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s-1;rport\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:raw@127.0.0.1>;tag=raw1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: %s\r\n"+
				"CSeq: 1 INVITE\r\nContact: <sip:raw@%s;transport=%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
				target, tr, peer.local, callID, callID, peer.local, strings.ToLower(tr), len(sdp), sdp))
			var leg *Leg
			select {
			case leg = <-legs:
			case <-time.After(5 * time.Second):
				t.Fatal("no leg")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			answerErr := make(chan error, 1)
			go func() { answerErr <- leg.Answer(ctx) }()
			var ok *sip.Response
			for ok == nil {
				if res, isRes := peer.read().(*sip.Response); isRes && res.StatusCode == 200 {
					ok = res
				}
			}
			checkSentBy(t, "200 to INVITE", nil, ok.Contact(), tr, a.listenPort(tr))
			peer.send(fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s-2;rport\r\nMax-Forwards: 70\r\n"+
				"From: <sip:raw@127.0.0.1>;tag=raw1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
				ok.Contact().Address.String(), tr, peer.local, callID, ok.To().Value(), callID))
			if err := <-answerErr; err != nil {
				t.Fatalf("answer: %v", err)
			}
			hangupErr := make(chan error, 1)
			go func() { hangupErr <- leg.Hangup(ctx) }()
			var bye *sip.Request
			for bye == nil {
				msg := peer.read()
				if req, isReq := msg.(*sip.Request); isReq && req.Method == sip.BYE {
					bye = req
				} else if res, isRes := msg.(*sip.Response); !isRes || res.StatusCode != 200 {
					t.Fatalf("got %q, want BYE", msg.String()) // 200 retransmissions aside
				}
			}
			if bye.Via() == nil {
				t.Fatal("BYE without Via")
			}
			wantPort := a.listenPort(tr)
			if tr == "WS" {
				wantPort = int(webPort)
			}
			checkSentBy(t, "BYE", bye.Via(), nil, tr, wantPort)
			peer.send(sip.NewResponseFromRequest(bye, 200, "OK", nil).String())
			if err := <-hangupErr; err != nil {
				t.Fatalf("hangup: %v (the BYE's 200 was not matched)", err)
			}
		})
	}
}

// Listening on every interface, requests over UDP still leave from the
// listening socket (the port in Via), not from a new socket per peer, and
// requests over TCP name the local address of their connection.
func TestRequestsFromAnAgentOnAllInterfaces(t *testing.T) {
	a := startTestAgent(t, Config{ListenAddr: "0.0.0.0:0"})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialErr := make(chan error, 1)
	go func() {
		_, err := a.DialURI(ctx, "sip:peer@"+pc.LocalAddr().String(), DialOptions{Timeout: 5 * time.Second})
		dialErr <- err
	}()
	buf := make([]byte, 65535)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no INVITE: %v", err)
	}
	if got := from.(*net.UDPAddr).Port; got != int(a.Addr().Port()) {
		t.Errorf("INVITE came from port %d, want the listening port %d", got, a.Addr().Port())
	}
	msg, err := sip.ParseMessage(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	if req.Via().Port != int(a.Addr().Port()) {
		t.Errorf("Via port %d, want %d", req.Via().Port, a.Addr().Port())
	}
	_, _ = pc.WriteTo([]byte(sip.NewResponseFromRequest(req, 486, "Busy Here", nil).String()), from)
	if err := <-dialErr; !errors.Is(err, ErrBusy) {
		t.Fatalf("dial: %v, want busy", err)
	}

	// Over TCP the Via names the connection's own local address, the
	// loopback a local peer reached, not the host's first interface.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		_, err := a.DialURI(ctx, "sip:peer@"+ln.Addr().String()+";transport=tcp", DialOptions{Timeout: 5 * time.Second})
		dialErr <- err
	}()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("no TCP connection: %v", err)
	}
	defer conn.Close()
	tcpReq, ok := readStreamMessage(t, conn, bufio.NewReader(conn)).(*sip.Request)
	if !ok || tcpReq.Via() == nil {
		t.Fatal("no INVITE with a Via over TCP")
	}
	checkSentBy(t, "INVITE over TCP", tcpReq.Via(), nil, "TCP", a.listenPort("TCP"))
	_, _ = conn.Write([]byte(sip.NewResponseFromRequest(tcpReq, 486, "Busy Here", nil).String()))
	if err := <-dialErr; !errors.Is(err, ErrBusy) {
		t.Fatalf("dial over TCP: %v, want busy", err)
	}
}

// A phone registered over TCP is called over the connection it registered
// on while that is open (behind NAT nothing else reaches it); once it is
// closed, at the Contact it registered.
func TestDialRegisteredUserReusesItsConnection(t *testing.T) {
	reg := NewRegistrar(NewDirectory(Account{Name: "bob", Password: "pw"}), "switchboard", nil)
	a := startTestAgent(t, Config{Registrar: reg})
	contactLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer contactLn.Close()
	phoneConn, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer phoneConn.Close()
	src := netip.MustParseAddrPort(phoneConn.LocalAddr().String())
	bind := func() {
		reg.mu.Lock()
		reg.bindings["bob"] = []Binding{{User: "bob", Contact: "sip:bob@" + contactLn.Addr().String() + ";transport=tcp",
			Source: src, Transport: "TCP", Expires: time.Now().Add(time.Minute)}}
		reg.mu.Unlock()
	}
	// The agent's side of the phone's connection must exist before we dial.
	waitCond(t, "the phone's connection to be accepted", func() bool { return a.liveConnection("TCP", src.String()) })
	bind()

	// dialBusy dials bob, takes the INVITE from the connection peer
	// returns and answers it 486.
	dialBusy := func(t *testing.T, peer func() net.Conn) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		dialErr := make(chan error, 1)
		go func() {
			_, err := a.Dial(ctx, "bob", DialOptions{Timeout: 5 * time.Second})
			dialErr <- err
		}()
		conn := peer()
		if conn == nil {
			t.Fatal("no connection reached the phone")
		}
		msg := readStreamMessage(t, conn, bufio.NewReader(conn))
		req, ok := msg.(*sip.Request)
		if !ok || req.Method != sip.INVITE {
			t.Fatalf("got %q, want INVITE", msg.String())
		}
		checkSentBy(t, "INVITE", req.Via(), req.Contact(), "TCP", a.listenPort("TCP"))
		if _, err := conn.Write([]byte(sip.NewResponseFromRequest(req, 486, "Busy Here", nil).String())); err != nil {
			t.Fatal(err)
		}
		if err := <-dialErr; !errors.Is(err, ErrBusy) {
			t.Fatalf("dial: %v, want busy", err)
		}
	}
	t.Run("over the registration's connection", func(t *testing.T) {
		dialBusy(t, func() net.Conn { return phoneConn })
	})

	phoneConn.Close()
	waitCond(t, "the agent to see the connection closed", func() bool { return !a.liveConnection("TCP", src.String()) })
	t.Run("at the contact once that connection is gone", func(t *testing.T) {
		dialBusy(t, func() net.Conn {
			_ = contactLn.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
			c, err := contactLn.Accept()
			if err != nil {
				return nil
			}
			t.Cleanup(func() { c.Close() })
			return c
		})
	})
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
