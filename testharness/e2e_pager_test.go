package testharness_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Pager-mode MESSAGE from SIPp: one for the application reaches
// Config.OnMessage, one for a registered user is relayed to that user's
// phone; the server also sends one to the phone itself. A MESSAGE for
// nobody gets 404. SIPp sends from sipp@sipp.invalid: a guest (a From
// naming this server would be challenged with 407).
func TestSIPpPagerMessage(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "bob", Password: "pw"})
	app := make(chan sip.PagerMessage, 1)
	srv := startServer(t, framework.Config{Users: users, OnMessage: func(m sip.PagerMessage) int {
		if m.User != "bot" {
			return 404
		}
		app <- m
		return 200
	}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return nil }))
	phoneGot := make(chan sip.PagerMessage, 2)
	bob, err := testharness.NewPhone(testharness.PhoneOptions{Logger: testLogger(t), OnMessage: func(m sip.PagerMessage) int {
		phoneGot <- m
		return 200
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := bob.Register(ctx, srv.SIPAddr().String(), "bob", "pw"); err != nil {
		t.Fatal(err)
	}

	if out, err := runSIPp(t, "-sf", scenario("pager_message.xml"), "-s", "bot", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp to the app: %v\n%s", err, tail(out, 3000))
	}
	select {
	case m := <-app:
		if strings.TrimSpace(m.Text) != "hello bot, from sipp" || m.FromUser != "sipp" || !strings.HasPrefix(m.ContentType, "text/plain") {
			t.Fatalf("app got %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the application never got the MESSAGE")
	}

	if out, err := runSIPp(t, "-sf", scenario("pager_message.xml"), "-s", "bob", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp to bob: %v\n%s", err, tail(out, 3000))
	}
	select {
	case m := <-phoneGot:
		if strings.TrimSpace(m.Text) != "hello bob, from sipp" || m.FromUser != "sipp" {
			t.Fatalf("bob's phone got %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("bob's phone never got the relayed MESSAGE")
	}

	if err := srv.SendMessage(ctx, "bob", "operator", "your call is waiting"); err != nil {
		t.Fatalf("SendMessage to bob: %v", err)
	}
	select {
	case m := <-phoneGot:
		if m.Text != "your call is waiting" || m.FromUser != "operator" {
			t.Fatalf("bob's phone got %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("bob's phone never got the server's MESSAGE")
	}

	if out, err := runSIPp(t, "-sf", scenario("pager_message.xml"), "-s", "nobody", srv.SIPAddr().String()); err == nil {
		t.Fatalf("a MESSAGE for nobody was accepted:\n%s", tail(out, 2000))
	}
}
