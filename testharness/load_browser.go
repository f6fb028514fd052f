package testharness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/bridge"
)

// browserCaller runs one simulated caller as a virtual browser: its own
// WebSocket and login, a "call" with an SDP offer, ICE and DTLS, then the
// scenario's steps as a SIP caller would run them. Every failure is
// named by the stage it happened in ("ws connect failed", "login
// refused", "call refused", "ICE failed", "DTLS failed", "no audio",
// "ws closed", "setup timeout").
func (r *runner) browserCaller(ctx context.Context, id int, hold time.Duration) CallResult {
	res := CallResult{ID: id, Transport: TransportWebRTC, Start: time.Now()}
	// One set-up deadline covers login, the call and the media path;
	// the run ending ends set-up too.
	sctx, cancel := context.WithTimeout(ctx, r.setupTimeout())
	defer cancel()
	timedOut := func(err error) bool {
		return errors.Is(err, context.DeadlineExceeded) || sctx.Err() == context.DeadlineExceeded
	}

	b, err := connectBrowser(sctx, r.sc.Browsers.WS)
	if err != nil {
		res.Failure = "ws connect failed: " + shortReason(err)
		if timedOut(err) {
			res.Failure = "setup timeout (ws connect)"
		}
		return res
	}
	defer b.Close() // after the call's hangup: the server reads "hangup" first
	if err = b.login(sctx, r.token(id)); err != nil {
		res.Failure = setupFailure("login", err, timedOut(err))
		return res
	}
	res.Login = time.Since(res.Start)

	up, down := r.sc.Uplink, r.sc.Downlink
	if up != (Impairment{}) || down != (Impairment{}) {
		up.Seed += uint64(id) // each caller its own (reproducible) network
		down.Seed += uint64(id)
	}
	c, err := b.call(sctx, r.sc.BrowserTo(), up, down)
	if err != nil {
		res.Failure = setupFailure("call", err, timedOut(err))
		return res
	}
	// Set-up counts from the "call" message (the offer, ICE candidates
	// gathered, as a browser sends it) to the server's answer.
	res.Setup = c.replied.Sub(c.sent)
	res.Answered = true
	r.answered.Add(1)

	// The server answered; media needs ICE, then DTLS, in the deadline.
	select {
	case <-c.connected:
	case <-c.failed:
	case <-c.done:
	case <-sctx.Done():
	}
	if failure := c.mediaFailure(); failure != "" {
		res.Failure = failure
		if ctx.Err() != nil {
			res.Failure = "canceled"
		}
		_ = c.Hangup(context.Background())
		return res
	}
	r.converse(ctx, &res, simLeg{
		far: c,
		press: func(digits string) error {
			return b.send(bridge.Message{Type: "dtmf", Call: c.id, Digit: digits})
		},
		firstRTP: func() time.Time {
			if n := c.firstRTP.Load(); n != 0 {
				return time.Unix(0, n)
			}
			return time.Time{}
		},
		sent: c.sent,
		endCause: func() string {
			if err := c.Err(); err != nil && strings.Contains(err.Error(), "socket closed") {
				return "ws closed"
			}
			return ""
		},
	}, hold)
	return res
}

// setupFailure names why a browser's login or call failed.
func setupFailure(stage string, err error, timedOut bool) string {
	var le *loginError
	var ce *callError
	switch {
	case errors.As(err, &le):
		return fmt.Sprintf("login refused: %d %s", le.code, le.why)
	case errors.As(err, &ce):
		return fmt.Sprintf("call refused: %d %s", ce.code, ce.why)
	case errors.Is(err, errBrowserClosed):
		return "ws closed"
	case timedOut && stage == "login":
		return "setup timeout (login)"
	case timedOut:
		return "setup timeout"
	}
	return stage + " failed: " + shortReason(err)
}

// mediaFailure names what keeps c's media from flowing: "" once the
// peer connection is connected (ICE and DTLS up).
func (c *browserCall) mediaFailure() string {
	select {
	case <-c.connected:
		return ""
	default:
	}
	select {
	case <-c.done:
		if err := c.Err(); err != nil && strings.Contains(err.Error(), "socket closed") {
			return "ws closed"
		}
		return "hung up by far end before media"
	default:
	}
	select {
	case <-c.iceUp:
		return "DTLS failed"
	default:
		return "ICE failed"
	}
}

// token is what browser caller id logs in with.
func (r *runner) token(id int) string {
	if r.tokens != nil {
		return r.tokens.MintFor(fmt.Sprintf("load%d", id), time.Hour)
	}
	return r.browserToken
}

func (r *runner) setupTimeout() time.Duration {
	if r.sc.SetupTimeout > 0 {
		return r.sc.SetupTimeout
	}
	return 10 * time.Second
}

// shortReason keeps the last part of a wrapped error ("connection
// refused"), for the failures table.
func shortReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 80 {
		s = s[i+2:]
	}
	return s
}
