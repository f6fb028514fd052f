package testharness_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Alice (extension 1000) calls the server; the flow dials Bob, a phone on
// 127.0.0.2, directly ("plain", an untrusted peer) or through a trunk at
// that address marked trusted ("trunk"). Bob's phone must show Alice's
// name and number in From; through the trusted trunk it also gets a
// P-Asserted-Identity (with the trunk's caller_id as number). When Alice
// sends "Privacy: id", the untrusted peer sees only an anonymous From and
// no PAI, the trusted trunk the identity with "Privacy: id".
func TestDialPresentsCallerIdentity(t *testing.T) {
	bob := newPhoneWith(t, testharness.PhoneOptions{Addr: "127.0.0.2:0", RTPPortMin: 41000, RTPPortMax: 41499})
	callers := make(chan framework.CallerID, 1)
	trunk := sip.Trunk{Name: "carrier", Host: "127.0.0.2", Port: int(bob.Addr().Port()), CallerID: "15550001111", Trusted: true}
	srv := startServer(t, framework.Config{Trunks: []sip.Trunk{trunk}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		callers <- c.Caller()
		opts := framework.DialOptions{Timeout: 10 * time.Second}
		target := bob.URI("bob")
		if c.User() == "trunk" {
			opts.Trunk, target = "carrier", "bob"
		}
		return c.Dial(ctx, target, opts)
	}))
	tests := []struct {
		route       string
		private     bool
		wantFrom    sip.Identity // Name and User checked
		wantPAI     string       // PAI's user, "" for none
		wantPrivacy string
	}{
		{route: "plain", wantFrom: sip.Identity{Name: "Alice Smith", User: "1000"}},
		{route: "trunk", wantFrom: sip.Identity{Name: "Alice Smith", User: "15550001111"}, wantPAI: "15550001111"},
		{route: "plain", private: true, wantFrom: sip.Identity{Name: "Anonymous", User: "anonymous"}},
		{route: "trunk", private: true, wantFrom: sip.Identity{Name: "Alice Smith", User: "15550001111"}, wantPAI: "15550001111", wantPrivacy: "id"},
	}
	for _, tt := range tests {
		name := tt.route
		if tt.private {
			name += "/private"
		}
		t.Run(name, func(t *testing.T) {
			h := testharness.New(t, srv)
			opts := sip.DialOptions{FromUser: "1000", FromName: "Alice Smith"}
			if tt.private {
				opts.Headers = map[string]string{"Privacy": "id"}
			}
			h.Call(tt.route, testharness.HarnessCallOptions{Name: "Alice's call", Dial: &opts})
			got := testharness.Await(h, callers, "the flow to see Alice")
			if want := (framework.CallerID{Name: "Alice Smith", Number: "1000", URI: got.URI, Private: tt.private}); got != want || !strings.HasPrefix(got.URI, "sip:1000@") {
				t.Errorf("Call.Caller() = %+v, want %+v", got, want)
			}
			callB := h.ExpectIncoming(bob, "Bob")
			from := callB.Leg.RemoteIdentity()
			if from.Name != tt.wantFrom.Name || from.User != tt.wantFrom.User {
				t.Errorf("Bob's phone shows From %q, want name %q user %q", callB.Leg.From(), tt.wantFrom.Name, tt.wantFrom.User)
			}
			if tt.private && tt.wantPAI == "" && strings.Contains(callB.Leg.From(), "1000") {
				t.Errorf("a private caller's number reached an untrusted peer: From %q", callB.Leg.From())
			}
			pai := callB.Leg.Header("P-Asserted-Identity")
			switch {
			case tt.wantPAI == "" && pai != "":
				t.Errorf("untrusted peer got P-Asserted-Identity %q", pai)
			case tt.wantPAI != "":
				id, err := sip.ParseIdentity(pai)
				if err != nil || id.User != tt.wantPAI || id.Name != "Alice Smith" {
					t.Errorf("P-Asserted-Identity %q (%v), want Alice Smith with user %s", pai, err, tt.wantPAI)
				}
			}
			if got := callB.Leg.Header("Privacy"); got != tt.wantPrivacy {
				t.Errorf("Privacy header %q, want %q", got, tt.wantPrivacy)
			}
		})
	}
}

// A P-Asserted-Identity names the caller only when a trusted trunk sends
// it; from an untrusted source, or unreadable, the From stands.
func TestCallerFromAssertedIdentity(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trusted bool
		pai     string
		want    framework.CallerID
	}{
		{"trusted", true, `"Verified Name" <sip:+15551230000@carrier.example>, <tel:+15551230000>`, framework.CallerID{Name: "Verified Name", Number: "+15551230000", URI: "sip:+15551230000@carrier.example"}},
		{"trusted without a name", true, `<sip:+15551230000@carrier.example>`, framework.CallerID{Name: "Claimed", Number: "+15551230000", URI: "sip:+15551230000@carrier.example"}},
		{"untrusted", false, `"Verified Name" <sip:+15551230000@carrier.example>`, framework.CallerID{Name: "Claimed", Number: "1000"}},
		{"unreadable", true, `"Verified Name <sip:`, framework.CallerID{Name: "Claimed", Number: "1000"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			callers := make(chan framework.CallerID, 1)
			trunk := sip.Trunk{Name: "carrier", Host: "127.0.0.1", Trusted: tt.trusted}
			srv := startServer(t, framework.Config{Trunks: []sip.Trunk{trunk}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
				callers <- c.Caller()
				return c.Answer(ctx)
			}))
			h := testharness.New(t, srv)
			h.Call("5551234", testharness.HarnessCallOptions{Dial: &sip.DialOptions{FromUser: "1000", FromName: "Claimed",
				Headers: map[string]string{"P-Asserted-Identity": tt.pai}}})
			got := testharness.Await(h, callers, "the flow to see the caller")
			if tt.want.URI == "" {
				tt.want.URI = got.URI // the From's, with our address
			}
			if got != tt.want {
				t.Fatalf("Call.Caller() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// SIPp as a trusted carrier checks the identity we send it: Alice's name
// with the trunk's caller_id in From and in P-Asserted-Identity.
func TestSIPpTrustedTrunkSeesCallerIdentity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "uas_callerid.xml", "-mp", strconv.Itoa(freeUDPPort(t)))
	trunk := sip.Trunk{Name: "carrier", Host: "127.0.0.1", Port: uas.port, CallerID: "15550001111", Trusted: true}
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{Trunks: []sip.Trunk{trunk}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Dial(ctx, "15557654321", framework.DialOptions{Trunk: "carrier", Timeout: 10 * time.Second})
		dialErr <- err
		return err
	}))
	alice := newPhone(t)
	var call *testharness.PhoneCall
	var err error
	for range 50 { // SIPp binds its port
		if call, err = alice.Dial(ctx, uri(srv, "out"), sip.DialOptions{FromUser: "1000", FromName: "Alice Smith"}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Alice's call: %v", err)
	}
	_ = call.Hangup(ctx)
	uas.wait(t, ctx)
}

// baresip, a real softphone registered as alice, shows the caller the
// flow's Dial passed on: the event its ctrl_tcp interface reports when
// the call is established (what its UI shows) names Bob Jones, 2000.
func TestBaresipShowsCallerName(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctrl := ln.Addr().(*net.TCPAddr).Port // free for baresip's control socket
	ln.Close()
	startBaresipWith(t, srv, fmt.Sprintf("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:%d", ctrl), 440, 8)
	waitRegistered(t, srv, "alice")
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ctrl), 2*time.Second)
	if err != nil {
		t.Fatalf("baresip's ctrl_tcp: %v", err)
	}
	defer conn.Close()
	var events logBuffer
	go func() { _, _ = io.Copy(&events, conn) }()
	h := testharness.New(t, srv)
	call := h.Call("alice", testharness.HarnessCallOptions{Name: "the call to alice (baresip)",
		Dial: &sip.DialOptions{FromUser: "2000", FromName: "Bob Jones", FromHost: testharness.GuestDomain}})
	call.ExpectTone(440) // audio from baresip
	call.End()
	incoming := regexp.MustCompile(`\{[^{}]*"type":"CALL_ESTABLISHED"[^{}]*\}`)
	deadline := time.Now().Add(5 * time.Second)
	for !incoming.MatchString(events.String()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !incoming.MatchString(events.String()) {
		t.Fatalf("baresip reported no established call; its events:\n%s", tail([]byte(events.String()), 3000))
	}
	ev := incoming.FindString(events.String())
	// Let baresip answer our BYE before the test kills it.
	closed := regexp.MustCompile(`"type":"CALL_CLOSED"`)
	for !closed.MatchString(events.String()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(ev, `"peerdisplayname":"Bob Jones"`) || !strings.Contains(ev, `"peeruri":"sip:2000@`) {
		t.Fatalf("baresip's call event does not name Bob Jones, 2000: %s", ev)
	}
}
