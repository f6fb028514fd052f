package testharness_test

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A phone registered over TCP stays reachable after the idle lifetime has
// passed (its connection is the only way back to it and is kept while the
// registration lives), while a connection nobody uses is closed at that
// lifetime.
func TestRegisteredTCPPhoneKeptPastIdleLifetime(t *testing.T) {
	const idle = 700 * time.Millisecond
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "pw-a"})
	srv := startServer(t, framework.Config{Users: users, SIPConns: sip.ConnLimits{IdleTimeout: idle, FirstRequestTimeout: idle}},
		apps.Extensions(users, apps.Tone(1000)))
	h := testharness.New(t, srv)
	alice := h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	h.Register(alice, srv.SIPAddr().String()+";transport=tcp", "alice", "pw-a")
	// A bystander connection that sends nothing is closed meanwhile.
	idler, err := net.Dial("tcp", srv.SIPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idler.Close()
	_ = idler.SetReadDeadline(time.Now().Add(idle + 3*time.Second))
	if _, err := bufio.NewReader(idler).ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("an unused connection was not closed: %v", err)
	}
	time.Sleep(2 * idle) // well past the idle lifetime of alice's connection too

	call := h.Call("alice", testharness.HarnessCallOptions{Name: "the caller"})
	// The binding is alice's TCP source port, which nothing listens on:
	// the INVITE can reach her only over the connection she opened.
	atAlice := h.ExpectIncoming(alice, "alice's phone, registered over TCP,")
	call.PlayTone(600, 0)
	atAlice.ExpectTone(600)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// The same with a real softphone: baresip registers over TCP (it sends no
// keep-alives on its own), the server's idle lifetime passes, and a call
// to alice still reaches it over that connection; audio both ways.
func TestDialBaresipRegisteredOverTCPPastIdleLifetime(t *testing.T) {
	const idle = time.Second
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users, SIPConns: sip.ConnLimits{IdleTimeout: idle}},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
			return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
		}))
	b := startBaresipOpts(t, srv, baresipOptions{registrar: srv.SIPAddr().String() + ";transport=tcp"}, 440, 12)
	waitRegistered(t, srv, "alice")
	if bs := srv.Agent().Registrar().Lookup("alice"); len(bs) != 1 || bs[0].Transport != "TCP" {
		t.Fatalf("alice's binding %+v, want one over TCP", bs)
	}
	time.Sleep(3 * idle)
	h := testharness.New(t, srv)
	b.expectTwoWay(t, h.Call("alice", testharness.HarnessCallOptions{Name: "the call to alice after the idle lifetime"}), 440)
}

// SIPp over TCP through the connection guard's framing: it registers with
// digest auth (challenge, retry on the same connection) and places a call
// (INVITE, 200, ACK, BYE) to the echo route, with short deadlines that a
// live exchange must not trip.
func TestSIPpOverTCPThroughConnectionGuard(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users, InviteAuth: sip.InviteAuthNone, // SIPp's uac calls from our own address
		SIPConns: sip.ConnLimits{FirstRequestTimeout: 2 * time.Second, MessageTimeout: 2 * time.Second, IdleTimeout: 3 * time.Second}},
		apps.Echo(nil))
	target := srv.SIPAddr().String()
	if out, err := runSIPp(t, "-t", "t1", "-sf", scenario("register_auth.xml"), "-s", "alice", "-au", "alice", "-ap", "s3cret", target); err != nil {
		t.Fatalf("SIPp REGISTER over TCP: %v\n%s", err, tail(out, 3000))
	}
	if b := srv.Agent().Registrar().Lookup("alice"); len(b) != 1 || b[0].Transport != "TCP" {
		t.Fatalf("bindings after REGISTER over TCP: %+v", b)
	}
	if out, err := runSIPp(t, "-t", "t1", "-sn", "uac", "-s", "echo", "-d", "1000", target); err != nil {
		t.Fatalf("SIPp call over TCP: %v\n%s", err, tail(out, 3000))
	}
	testharness.New(t, srv).ExpectIdle()
}
