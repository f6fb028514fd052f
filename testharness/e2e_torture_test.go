package testharness_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// tortureCase is a message in the spirit of RFC 4475 (our own text, built
// from the RFC's descriptions) and what the server must do with it: a
// final status, or 0 for "any answer or none, as long as nothing breaks".
type tortureCase struct {
	name string
	msg  func(target, local, id string) string
	want int
}

func inviteWith(target, local, id, requestLine, extra, body string) string {
	if requestLine == "" {
		requestLine = "INVITE sip:tone@" + target + " SIP/2.0"
	}
	return requestLine + "\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + "\r\n" +
		"From: \"Torture\" <sip:t@" + local + ">;tag=" + id + "\r\n" +
		"To: <sip:tone@" + target + ">\r\n" +
		"Call-ID: " + id + "@torture\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:t@" + local + ">\r\n" +
		"Max-Forwards: 70\r\n" + extra +
		"Content-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(body)) + body
}

const tortureSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

var tortureCases = []tortureCase{
	{"folded and spaced headers (valid)", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "Subject:\r\n   folded\r\n\tacross lines\r\nX-Weird :   spaces before colon\r\n", tortureSDP), "Max-Forwards: 70", "Max-Forwards:    70   ", 1)
	}, 200},
	{"compact header names (valid)", func(tg, l, id string) string {
		m := inviteWith(tg, l, id, "", "", tortureSDP)
		for long, short := range map[string]string{"Via:": "v:", "From:": "f:", "To:": "t:", "Call-ID:": "i:", "Contact:": "m:", "Content-Type:": "c:", "Content-Length:": "l:"} {
			m = strings.Replace(m, long, short, 1)
		}
		return m
	}, 200},
	{"escaped user in request URI (valid: t%6Fne is tone)", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "INVITE sip:t%6Fne@"+tg+" SIP/2.0", "", tortureSDP)
	}, 200},
	{"user with no route", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "INVITE sip:nobody@"+tg+" SIP/2.0", "", tortureSDP)
	}, 404},
	{"tel: request URI (valid, routed by number)", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "INVITE tel:+15551234567;phone-context=+1 SIP/2.0", "", tortureSDP)
	}, 200},
	{"unknown URI scheme", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "INVITE mailto:tone@example.com SIP/2.0", "", tortureSDP)
	}, 416},
	{"future SIP version", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "INVITE sip:tone@"+tg+" SIP/7.0", "", tortureSDP)
	}, 505},
	{"Require of an unknown extension", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "", "Require: nothing-we-know\r\n", tortureSDP)
	}, 420},
	{"Max-Forwards zero", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), "Max-Forwards: 70", "Max-Forwards: 0", 1)
	}, 483},
	{"Content-Length beyond the datagram", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), fmt.Sprintf("Content-Length: %d", len(tortureSDP)), "Content-Length: 9999", 1)
	}, 400},
	{"negative Content-Length", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), fmt.Sprintf("Content-Length: %d", len(tortureSDP)), "Content-Length: -1", 1)
	}, 400},
	{"CSeq method mismatch", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), "CSeq: 1 INVITE", "CSeq: 1 OPTIONS", 1)
	}, 400},
	{"CSeq number over 2^31", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), "CSeq: 1 INVITE", "CSeq: 36893488147419103232 INVITE", 1)
	}, 400},
	{"missing Call-ID", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), "Call-ID: "+id+"@torture\r\n", "", 1)
	}, 400},
	{"unterminated quoted display name", func(tg, l, id string) string {
		return strings.Replace(inviteWith(tg, l, id, "", "", tortureSDP), "From: \"Torture\"", "From: \"Torture", 1)
	}, 0},
	{"SDP that is not SDP", func(tg, l, id string) string { return inviteWith(tg, l, id, "", "", "hello world\r\n") }, 400},
	{"SDP with an absurd port", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "", "", strings.Replace(tortureSDP, "m=audio 4000", "m=audio 99999", 1))
	}, 0},
	{"10 KB header value", func(tg, l, id string) string {
		return inviteWith(tg, l, id, "", "X-Huge: "+strings.Repeat("a", 10000)+"\r\n", tortureSDP)
	}, 0},
	{"binary garbage", func(string, string, string) string { return "\x00\x01\xff\xfeINVITE\x00\r\n\r\n" }, 0},
	{"only a request line", func(tg, l, id string) string { return "INVITE sip:tone@" + tg + " SIP/2.0\r\n\r\n" }, 0},
	{"response to nothing", func(tg, l, id string) string {
		return "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + l + ";branch=z9hG4bKnothing\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: nothing\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	}, 0},
	{"BYE for no dialog", func(tg, l, id string) string {
		return "BYE sip:tone@" + tg + " SIP/2.0\r\nVia: SIP/2.0/UDP " + l + ";branch=z9hG4bK" + id + "\r\nFrom: <sip:t@" + l + ">;tag=1\r\nTo: <sip:tone@" + tg + ">;tag=2\r\nCall-ID: " + id + "\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	}, 481},
}

// Every torture message gets the right final response or is dropped; the
// server never falls over and takes a normal call afterwards.
func TestTortureMessages(t *testing.T) {
	r := framework.NewRouter() // no default: an unknown user gets 404
	r.Handle("tone", apps.Tone(1000))
	r.Handle("+15551234567", apps.Tone(1000))
	srv := startServer(t, framework.Config{}, r)
	target := srv.SIPAddr().String()
	for i, tc := range tortureCases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			local := conn.LocalAddr().String()
			msg := tc.msg(target, local, fmt.Sprintf("tort%d", i))
			if _, err := conn.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(srv.SIPAddr())); err != nil {
				t.Fatal(err)
			}
			final := 0
			buf := make([]byte, 65535)
			wait := 3 * time.Second
			if tc.want == 0 {
				wait = 700 * time.Millisecond
			}
			_ = conn.SetReadDeadline(time.Now().Add(wait))
			for final < 200 {
				n, _, err := conn.ReadFrom(buf)
				if err != nil {
					break
				}
				fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &final)
				if final >= 200 && final < 300 {
					// Behave like a phone: ACK the 2xx, then hang up.
					ackAndBye(t, conn, srv, msg, string(buf[:n]))
				}
			}
			if tc.want != 0 && final != tc.want {
				t.Fatalf("final response %d, want %d", final, tc.want)
			}
			t.Logf("answered %d", final)
		})
	}
	// Still healthy: OPTIONS and a real call.
	testharness.New(t, srv).Call("tone", testharness.HarnessCallOptions{Name: "a normal call after the torture corpus"}).ExpectTone(1000)
}

// ackAndBye completes an answered torture INVITE: ACK and BYE built from
// the request's headers and the 2xx's To tag.
func ackAndBye(t *testing.T, conn *net.UDPConn, srv *framework.Server, invite, res string) {
	t.Helper()
	header := func(msg, name string) string {
		for _, line := range strings.Split(msg, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(strings.TrimSpace(k), name)) {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	compact := map[string]string{"Via": "v", "From": "f", "To": "t", "Call-ID": "i"}
	get := func(msg, name string) string {
		if v := header(msg, name); v != "" {
			return v
		}
		return header(msg, compact[name])
	}
	ruri := "sip:tone@" + srv.SIPAddr().String()
	for _, m := range []struct{ method, cseq string }{{"ACK", "1 ACK"}, {"BYE", "2 BYE"}} {
		req := m.method + " " + ruri + " SIP/2.0\r\n" +
			"Via: " + strings.Replace(get(invite, "Via"), "branch=z9hG4bK", "branch=z9hG4bK"+m.method, 1) + "\r\n" +
			"From: " + get(invite, "From") + "\r\nTo: " + get(res, "To") + "\r\nCall-ID: " + get(invite, "Call-ID") + "\r\n" +
			"CSeq: " + m.cseq + "\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
		if _, err := conn.WriteTo([]byte(req), net.UDPAddrFromAddrPort(srv.SIPAddr())); err != nil {
			t.Fatal(err)
		}
	}
}
