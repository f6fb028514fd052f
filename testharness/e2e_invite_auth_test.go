package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A phone calling as a directory user must prove it: SIPp answers the 407
// with the right password and the call flow sees the authenticated user
// (and hears its tone echoed); with a wrong password the INVITE gets 403
// and no call flow runs. A guest (From not in the directory) is not
// challenged.
func TestSIPpInviteWithDigestAuth(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	heard := make(chan bool, 4)
	authUsers := make(chan string, 4)
	echo := toneEchoHandler(heard)
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		authUsers <- c.AuthUser()
		return echo.ServeCall(ctx, c)
	}))
	target := srv.SIPAddr().String()

	out, err := runSIPp(t, "-sf", scenario("uac_auth.xml"), "-s", "echo", "-key", "caller", "alice",
		"-au", "alice", "-ap", "s3cret", "-mp", "32200", "-rtp_echo", target)
	if err != nil {
		t.Fatalf("authenticated call failed: %v\n%s", err, tail(out, 3000))
	}
	select {
	case u := <-authUsers:
		if u != "alice" {
			t.Fatalf("call flow saw AuthUser %q, want alice", u)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no call flow ran for the authenticated call")
	}
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never heard its tone echoed on the authenticated call")
	}

	out, err = runSIPp(t, "-sf", scenario("uac_auth.xml"), "-s", "echo", "-key", "caller", "alice",
		"-au", "alice", "-ap", "wrong", "-mp", "32200", target)
	if err == nil {
		t.Fatalf("a call with the wrong password was answered:\n%s", tail(out, 3000))
	}
	select {
	case u := <-authUsers:
		t.Fatalf("a call flow ran (AuthUser %q) for a call with the wrong password", u)
	case <-time.After(300 * time.Millisecond):
	}

	// A guest is not challenged (the scenario's 407 step then fails, so
	// use the harness phone, whose From user is "harness").
	h := testharness.New(t, srv)
	h.Call("echo", testharness.HarnessCallOptions{Name: "the guest call"})
	if u := testharness.Await(h, authUsers, "a call flow for the guest call"); u != "" {
		t.Fatalf("guest call flow saw AuthUser %q, want empty", u)
	}
}

// Unknown-extension scanning: after Limiter.Max calls to users that do not
// exist from one source, that source gets 403 even for valid routes.
func TestScannerBlockedAfterUnknownUsers(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if c.User() != "echo" {
			return c.Reject(ctx, 404)
		}
		return c.Play(ctx, media.Silence(500*time.Millisecond))
	}))
	h := testharness.New(t, srv)
	max := srv.Agent().Registrar().Limiter.Max
	for i := range max {
		err := h.CallFails("1"+string(rune('0'+i%10))+"0", testharness.HarnessCallOptions{Name: fmt.Sprintf("call %d to an unknown user", i)})
		var se *sip.StatusError
		if !errors.As(err, &se) || se.Code != 404 {
			t.Fatalf("call %d to an unknown user: %v, want 404", i, err)
		}
	}
	err := h.CallFails("echo", testharness.HarnessCallOptions{Name: "a call from a blocked scanner source"})
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("call from a blocked scanner source: %v, want 403", err)
	}
}
