package testharness_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
)

func sessionTimerServer(t *testing.T, cdrs chan<- framework.CDR) *framework.Server {
	return startServer(t, framework.Config{MinSessionExpires: time.Second, OnCallEnd: func(c framework.CDR) {
		select {
		case cdrs <- c:
		default:
		}
	}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, media.Silence(time.Minute))
	}))
}

// RFC 4028 with SIPp as the refresher: the 200 confirms the interval and
// requires "timer"; an UPDATE refresh is answered; when refreshes stop
// the server hangs up (BYE) before the interval ends, cause "session
// expired".
func TestSIPpSessionTimerCallerRefreshes(t *testing.T) {
	cdrs := make(chan framework.CDR, 1)
	srv := sessionTimerServer(t, cdrs)
	start := time.Now()
	if out, err := runSIPp(t, "-sf", scenario("session_timer_uac.xml"), "-s", "st", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	// ACK at ~0, refresh at 1.2 s; expiry 3 s - 1 s after the refresh.
	if d := time.Since(start); d < 2500*time.Millisecond || d > 6*time.Second {
		t.Errorf("call lasted %s, want about 3.2 s (refresh at 1.2 s + 2 s)", d)
	}
	select {
	case c := <-cdrs:
		if c.Cause != "session expired" {
			t.Errorf("CDR cause %q, want session expired", c.Cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CDR")
	}
}

// RFC 4028 with the server as the refresher: it sends UPDATE refreshes at
// half the interval.
func TestSIPpSessionTimerServerRefreshes(t *testing.T) {
	srv := sessionTimerServer(t, nil)
	if out, err := runSIPp(t, "-sf", scenario("session_timer_uas.xml"), "-s", "st", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
}

// An interval under our minimum gets 422 with Min-SE.
func TestSessionIntervalTooSmall(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Answer(ctx)
	}))
	code, res := rawRequest(t, srv, func(local string) string {
		body := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
		return "INVITE sip:x@" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKse1\r\n" +
			"From: <sip:probe@" + local + ">;tag=9\r\nTo: <sip:x@" + srv.SIPAddr().String() + ">\r\n" +
			"Call-ID: se422\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:probe@" + local + ">\r\n" +
			"Supported: timer\r\nSession-Expires: 30\r\nContent-Type: application/sdp\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	})
	if code != 422 || !strings.Contains(res, "Min-SE: 90") {
		t.Fatalf("INVITE with Session-Expires 30: %d\n%s", code, res)
	}
}
