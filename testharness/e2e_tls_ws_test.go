package testharness_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A phone calls over TLS, trusting the server's generated development
// certificate: it hears the tone, and the server's BYE reaches it over
// TLS too.
func TestCallOverTLS(t *testing.T) {
	srv := startServer(t, framework.Config{TLSAddr: "127.0.0.1:0"}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 1500 * time.Millisecond})); err != nil {
			return err
		}
		return c.Hangup(ctx)
	}))
	if !srv.TLSAddr().IsValid() {
		t.Fatal("server has no TLS listener")
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Agent().TLSCertificate())
	h := testharness.New(t, srv)
	tlsURI := fmt.Sprintf("sip:tone@%s;transport=tls", srv.TLSAddr())
	call := h.Call("tone", testharness.HarnessCallOptions{Name: "the call over TLS", URI: tlsURI,
		Phone: h.Phone(testharness.PhoneOptions{TLS: true, TLSRootCAs: roots})})
	call.ExpectTone(1000)
	call.ExpectHangup() // the server's BYE, over TLS

	// A phone that does not trust the certificate cannot call.
	h.CallFails("tone", testharness.HarnessCallOptions{Name: "a phone without the certificate", URI: tlsURI,
		Phone: h.Phone(testharness.PhoneOptions{TLS: true})})
}

// SIP over WebSocket (RFC 7118) on the HTTP port: a minimal WebSocket SIP
// client places a call to the tone route, receives RTP on its own UDP
// socket and detects the tone, then hangs up with BYE over the socket.
func TestCallOverWebSocket(t *testing.T) {
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0"}, apps.Tone(1000))
	httpAddr := srv.HTTPAddr()
	// Not an upgrade: a clear 400.
	res, err := http.Get("http://" + httpAddr + "/sip")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET /sip: %d, want 400", res.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	dialer := ws.Dialer{Protocols: []string{"sip"}}
	conn, _, hs, err := dialer.Dial(ctx, "ws://"+httpAddr+"/sip")
	if err != nil {
		t.Fatalf("WebSocket dial: %v", err)
	}
	defer conn.Close()
	if hs.Protocol != "sip" {
		t.Fatalf("handshake subprotocol %q, want sip", hs.Protocol)
	}
	rtpConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtpConn.Close()
	rtpPort := rtpConn.LocalAddr().(*net.UDPAddr).Port
	target := "sip:tone@" + srv.SIPAddr().String()
	body := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", rtpPort)
	hdr := func(method string, cseq int, toTag string) string {
		to := "<" + target + ">"
		if toTag != "" {
			to += ";tag=" + toTag
		}
		return fmt.Sprintf("%s %s SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws%s%d\r\n"+
			"From: <sip:web@example.invalid>;tag=wsclient\r\nTo: %s\r\nCall-ID: ws-call-1\r\nCSeq: %d %s\r\n"+
			"Max-Forwards: 70\r\nContact: <sip:web@df7jal23ls0d.invalid;transport=ws>\r\n", method, target, method, cseq, to, cseq, method)
	}
	send := func(msg string) {
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			t.Fatalf("WebSocket write: %v", err)
		}
	}
	read := func(want string) string {
		for range 10 {
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			msg, err := wsutil.ReadServerText(conn)
			if err != nil {
				t.Fatalf("WebSocket read waiting for %q: %v", want, err)
			}
			if strings.HasPrefix(string(msg), want) {
				return string(msg)
			}
		}
		t.Fatalf("never got %q", want)
		return ""
	}
	send(hdr("INVITE", 1, "") + "Content-Type: application/sdp\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body)
	ok := read("SIP/2.0 200")
	toTag := ""
	for _, line := range strings.Split(ok, "\r\n") {
		if strings.HasPrefix(line, "To:") {
			if i := strings.Index(line, "tag="); i >= 0 {
				toTag = strings.TrimSpace(strings.SplitN(line[i+4:], ";", 2)[0])
			}
		}
	}
	if toTag == "" {
		t.Fatalf("200 without To tag:\n%s", ok)
	}
	send(hdr("ACK", 1, toTag) + "Content-Length: 0\r\n\r\n")

	buf := make([]byte, 1500)
	heard := false
	for i := 0; i < 200 && !heard; i++ {
		_ = rtpConn.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, _, err := rtpConn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no RTP for the WebSocket call: %v", err)
		}
		var p rtp.Packet
		if p.Unmarshal(buf[:n]) != nil || p.PayloadType != 0 {
			continue
		}
		pcm := codec.PCMU{}.Decode(nil, p.Payload)
		if fr, _ := dsp.DominantFrequency(pcm, 8000, 100, 3800, 10); dsp.RMS(pcm) > 1000 && fr > 980 && fr < 1020 {
			heard = true
		}
	}
	if !heard {
		t.Fatal("the tone never arrived on the WebSocket call's RTP")
	}
	send(hdr("BYE", 2, toTag) + "Content-Length: 0\r\n\r\n")
	read("SIP/2.0 200")
	testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
}
