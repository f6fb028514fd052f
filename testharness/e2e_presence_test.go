package testharness_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// presenceServer serves alice, bob and carol; calling "ring-<user>"
// dials that user's phones.
func presenceServer(t *testing.T, cfg framework.Config) *framework.Server {
	t.Helper()
	cfg.Users = sip.NewDirectory(sip.Account{Name: "alice", Password: "a-pass"}, sip.Account{Name: "bob", Password: "b-pass"},
		sip.Account{Name: "carol", Password: "c-pass"})
	return startServer(t, cfg, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if user, ok := strings.CutPrefix(c.User(), "ring-"); ok {
			return c.Dial(ctx, user, framework.DialOptions{Timeout: 10 * time.Second})
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 30 * time.Second}))
	}))
}

func newWatcher(t *testing.T) *testharness.Watcher {
	t.Helper()
	w, err := testharness.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// A busy-lamp field (bob's watcher) subscribes to alice's dialog and
// presence events; a call to alice's registered phone shows as early,
// confirmed while she is on it (PIDF on-the-phone), and terminated when it
// ends; unsubscribing gets a terminated NOTIFY.
func TestDialogAndPresenceNotify(t *testing.T) {
	srv := presenceServer(t, framework.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	h := testharness.New(t, srv)
	alice := h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, AnswerDelay: 300 * time.Millisecond})

	dlgW, presW := newWatcher(t), newWatcher(t)
	bob := testharness.WatchOptions{Event: "dialog", Expires: 600, Username: "bob", Password: "b-pass"}
	dlg, code, err := dlgW.Subscribe(ctx, srv.SIPAddr(), "alice", bob)
	if err != nil || code != 200 {
		t.Fatalf("SUBSCRIBE dialog: %d %v", code, err)
	}
	n, err := dlgW.Next(ctx)
	if err != nil || !strings.HasPrefix(n.SubscriptionState, "active") || n.ContentType != "application/dialog-info+xml" || testharness.StateOf(n.Body) != "" {
		t.Fatalf("first dialog NOTIFY: %+v %v", n, err)
	}
	bob.Event = "presence"
	pres, code, err := presW.Subscribe(ctx, srv.SIPAddr(), "alice", bob)
	if err != nil || code != 200 {
		t.Fatalf("SUBSCRIBE presence: %d %v", code, err)
	}
	if n, err := presW.Next(ctx); err != nil || !strings.Contains(n.Body, "<basic>closed</basic>") || n.ContentType != "application/pidf+xml" {
		t.Fatalf("first presence NOTIFY while alice is offline: %+v %v", n, err)
	}

	h.Register(alice, "", "alice", "a-pass")
	if _, err := presW.WaitFor(ctx, func(n testharness.Notify) bool { return strings.Contains(n.Body, "<basic>open</basic>") }); err != nil {
		t.Fatalf("no open PIDF after alice registered: %v", err)
	}

	call := h.Call("ring-alice", testharness.HarnessCallOptions{Name: "the call to alice"})
	var states []string
	if _, err := dlgW.WaitFor(ctx, func(n testharness.Notify) bool {
		states = append(states, testharness.StateOf(n.Body))
		return testharness.StateOf(n.Body) == "confirmed"
	}); err != nil {
		t.Fatalf("no confirmed dialog NOTIFY (saw %v): %v", states, err)
	}
	if !strings.Contains(strings.Join(states, ","), "early") {
		t.Errorf("dialog states before confirmed: %v, want early among them", states)
	}
	if _, err := presW.WaitFor(ctx, func(n testharness.Notify) bool { return strings.Contains(n.Body, "<rpid:on-the-phone/>") }); err != nil {
		t.Fatalf("no on-the-phone PIDF during the call: %v", err)
	}
	if p, _ := srv.Presence().Get("alice"); p.Status != framework.PresenceOnCall {
		t.Fatalf("roster says alice is %s during the call", p.Status)
	}
	call.HangUp()
	if n, err := dlgW.WaitFor(ctx, func(n testharness.Notify) bool { return testharness.StateOf(n.Body) == "terminated" }); err != nil {
		t.Fatalf("no terminated dialog NOTIFY after hangup: %v", err)
	} else if !strings.Contains(n.Body, `direction="recipient"`) {
		t.Errorf("dialog NOTIFY does not say alice's phone was the recipient:\n%s", n.Body)
	}
	if _, err := presW.WaitFor(ctx, func(n testharness.Notify) bool {
		return strings.Contains(n.Body, "<basic>open</basic>") && !strings.Contains(n.Body, "on-the-phone")
	}); err != nil {
		t.Fatalf("no available PIDF after the call: %v", err)
	}

	// A user-chosen status and note reach the watcher.
	if err := srv.Presence().Set("alice", framework.PresenceAway, "back at 3 & later"); err != nil {
		t.Fatal(err)
	}
	if _, err := presW.WaitFor(ctx, func(n testharness.Notify) bool {
		return strings.Contains(n.Body, "<rpid:away/>") && strings.Contains(n.Body, "<dm:note>back at 3 &amp; later</dm:note>")
	}); err != nil {
		t.Fatalf("no away PIDF with the note: %v", err)
	}

	if code, err := pres.Refresh(ctx, 0); err != nil || code != 200 {
		t.Fatalf("unsubscribe: %d %v", code, err)
	}
	if _, err := presW.WaitFor(ctx, func(n testharness.Notify) bool { return strings.HasPrefix(n.SubscriptionState, "terminated") }); err != nil {
		t.Fatalf("no terminated NOTIFY after unsubscribe: %v", err)
	}
	if code, _ := pres.Refresh(ctx, 600); code != 481 {
		t.Fatalf("refresh of an ended subscription: %d, want 481", code)
	}
	if code, err := dlg.Refresh(ctx, 600); err != nil || code != 200 {
		t.Fatalf("refresh dialog subscription: %d %v", code, err)
	}
}

// Bad SUBSCRIBEs get the status RFC 6665 asks for, and a subscription
// that is not refreshed ends with a terminated NOTIFY (reason timeout).
func TestSubscribeErrorsAndExpiry(t *testing.T) {
	srv := presenceServer(t, framework.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := newWatcher(t)
	bob := testharness.WatchOptions{Event: "presence", Expires: 600, Username: "bob", Password: "b-pass"}
	for _, tc := range []struct {
		name   string
		target string
		mod    func(o *testharness.WatchOptions)
		want   int
	}{
		{"unknown user", "mallory", nil, 404},
		{"unknown package", "alice", func(o *testharness.WatchOptions) { o.Event = "message-summary" }, 489},
		{"bad Event header", "alice", func(o *testharness.WatchOptions) { o.Event = "pres ence;;" }, 400},
		{"too brief", "alice", func(o *testharness.WatchOptions) { o.Expires = 5 }, 423},
		{"wrong password", "alice", func(o *testharness.WatchOptions) { o.Password = "nope" }, 403},
		{"no credentials", "alice", func(o *testharness.WatchOptions) { o.Password = "" }, 407},
		{"unacceptable body type", "alice", func(o *testharness.WatchOptions) { o.Accept = "text/plain" }, 406},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := bob
			if tc.mod != nil {
				tc.mod(&o)
			}
			_, code, err := w.Subscribe(ctx, srv.SIPAddr(), tc.target, o)
			if err != nil || code != tc.want {
				t.Fatalf("status %d (%v), want %d", code, err, tc.want)
			}
		})
	}
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// baresip's presence module is a real watcher: registered as bob, it
// subscribes to alice (a contact marked presence=p2p) and logs each
// change of her status: online when her phone registers, busy while she
// is on a call, online again when it ends.
func TestBaresipSeesPresence(t *testing.T) {
	srv := presenceServer(t, framework.Config{})
	addr := srv.SIPAddr().String()
	b := startBaresipOpts(t, srv, baresipOptions{
		account:     fmt.Sprintf("<sip:bob@%s>;auth_pass=b-pass;regint=60", addr),
		extraConfig: "module_app contact.so\nmodule_app presence.so",
		files:       map[string]string{"contacts": fmt.Sprintf("\"Alice\" <sip:alice@%s>;presence=p2p\n", addr)},
	}, 440, 40)
	testharness.WaitUntil(t, 10*time.Second, "baresip to subscribe to alice", func() bool { return srv.Agent().Subscriptions() == 1 })
	time.Sleep(500 * time.Millisecond) // its first NOTIFY (offline) is answered; baresip logs only changes after it
	changed := func(from, to string) {
		t.Helper()
		want := fmt.Sprintf("changed status from %s to %s", from, to)
		testharness.WaitUntil(t, 10*time.Second, "baresip to log "+want, func() bool { return strings.Contains(ansi.ReplaceAllString(b.logText(), ""), want) })
	}

	h := testharness.New(t, srv)
	h.Register(h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, AnswerDelay: 200 * time.Millisecond}), "", "alice", "a-pass")
	changed("Offline", "Online")
	call := h.Call("ring-alice", testharness.HarnessCallOptions{Name: "the call to alice"})
	changed("Online", "Busy")
	call.HangUp()
	changed("Busy", "Online")
	for _, line := range strings.Split(ansi.ReplaceAllString(b.logText(), ""), "\n") {
		if strings.Contains(line, "presence") || strings.Contains(line, "changed status") {
			t.Log("baresip:", line)
		}
	}
}

// Subscriptions end with a terminated NOTIFY when they expire (reason
// timeout) and when the server shuts down (reason deactivated); one source
// cannot hold more than its share.
func TestSubscriptionExpiryShutdownAndLimits(t *testing.T) {
	limits := sip.SubscriptionLimits{MinExpires: time.Second, MaxPerSource: 2}
	srv := presenceServer(t, framework.Config{Subscriptions: limits})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := newWatcher(t)
	bob := testharness.WatchOptions{Event: "presence", Expires: 2, Username: "bob", Password: "b-pass"}
	if _, code, err := w.Subscribe(ctx, srv.SIPAddr(), "alice", bob); err != nil || code != 200 {
		t.Fatalf("SUBSCRIBE: %d %v", code, err)
	}
	n, err := w.WaitFor(ctx, func(n testharness.Notify) bool { return strings.HasPrefix(n.SubscriptionState, "terminated") })
	if err != nil || n.SubscriptionState != "terminated;reason=timeout" {
		t.Fatalf("expiry: %+v %v", n, err)
	}
	testharness.WaitUntil(t, 5*time.Second, "the expired subscription to be gone", func() bool { return srv.Agent().Subscriptions() == 0 })

	bob.Expires = 600
	for i := range 2 {
		if _, code, err := w.Subscribe(ctx, srv.SIPAddr(), "carol", bob); err != nil || code != 200 {
			t.Fatalf("SUBSCRIBE %d: %d %v", i, code, err)
		}
	}
	if _, code, err := w.Subscribe(ctx, srv.SIPAddr(), "carol", bob); err != nil || code != 503 {
		t.Fatalf("third SUBSCRIBE from one source: %d %v, want 503", code, err)
	}
	for range 2 { // the two initial NOTIFYs
		if _, err := w.WaitFor(ctx, func(n testharness.Notify) bool { return strings.HasPrefix(n.SubscriptionState, "active") }); err != nil {
			t.Fatal(err)
		}
	}
	srv.Agent().Close() // what the server's shutdown does to SIP
	for range 2 {
		n, err := w.WaitFor(ctx, func(n testharness.Notify) bool { return strings.HasPrefix(n.SubscriptionState, "terminated") })
		if err != nil || n.SubscriptionState != "terminated;reason=deactivated" {
			t.Fatalf("shutdown: %+v %v", n, err)
		}
	}
}

// A registered user who places a call is on a call (the dialog's
// initiator) until it ends; Config.OnPresence sees every change in order
// and the roster lists everyone.
func TestCallerPresenceAndFeed(t *testing.T) {
	changes := make(chan framework.PresenceChange, 64)
	srv := presenceServer(t, framework.Config{OnPresence: func(c framework.PresenceChange) {
		select {
		case changes <- c:
		default:
			t.Error("presence feed test buffer full")
		}
	}})
	h := testharness.New(t, srv)
	alice := h.Phone(testharness.PhoneOptions{})
	h.Register(alice, "", "alice", "a-pass")
	call := h.Call("tone", testharness.HarnessCallOptions{Name: "alice's call", Phone: alice,
		Dial: &sip.DialOptions{FromUser: "alice", Username: "alice", Password: "a-pass"}})
	call.ExpectToneBetween(970, 1030)
	roster := srv.Presence().Roster()
	if len(roster) != 3 || roster[0].User != "alice" || roster[0].Status != framework.PresenceOnCall || roster[1].Status != framework.PresenceOffline {
		t.Fatalf("roster during the call: %+v", roster)
	}
	call.HangUp()
	h.Eventually("alice to be available again", func() bool {
		p, _ := srv.Presence().Get("alice")
		return p.Status == framework.PresenceAvailable
	})
	var got []string
	var seq uint64
	for len(changes) > 0 {
		c := <-changes
		if c.Seq != seq+1 {
			t.Fatalf("feed skipped from %d to %d", seq, c.Seq)
		}
		seq = c.Seq
		s := c.Presence.Status.String()
		if c.Dialog != nil {
			s += "/" + c.Dialog.Direction.String() + ":" + c.Dialog.State.String()
		}
		got = append(got, s)
	}
	want := "available,on-call/initiator:trying,on-call/initiator:confirmed,available/initiator:terminated"
	if strings.Join(got, ",") != want {
		t.Fatalf("presence feed:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
}

// baresip publishes its user's presence (PUBLISH with PIDF, account
// parameter pubint): told to go offline (its "]" command) while
// registered, alice shows offline in the roster although her phone is
// online.
func TestBaresipPublishesPresence(t *testing.T) {
	srv := presenceServer(t, framework.Config{})
	addr := srv.SIPAddr().String()
	startBaresipOpts(t, srv, baresipOptions{
		account:     fmt.Sprintf("<sip:alice@%s>;auth_pass=a-pass;regint=60;pubint=60", addr),
		extraConfig: "module_app presence.so",
	}, 440, 20, "]")
	testharness.WaitUntil(t, 10*time.Second, "alice registered but published offline", func() bool {
		p, _ := srv.Presence().Get("alice")
		return p.Online == 1 && p.Status == framework.PresenceOffline
	})
}

// SIPp as a busy-lamp field (an independent SIP stack parsing our
// NOTIFYs), over UDP and over TCP (NOTIFYs reuse its connection): it
// subscribes to alice's dialog package with digest auth,
// sees a NOTIFY with a confirmed dialog once a call to alice is answered,
// then unsubscribes and gets a terminated NOTIFY.
func TestSIPpDialogSubscription(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) { sippDialogSubscription(t, transport) })
	}
}

func sippDialogSubscription(t *testing.T, transport string) {
	srv := presenceServer(t, framework.Config{})
	addr := srv.SIPAddr().String()
	h := testharness.New(t, srv)
	h.Register(h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, AnswerDelay: 200 * time.Millisecond}), "", "alice", "a-pass")
	args := []string{"-sf", scenario("subscribe_dialog.xml"), "-s", "alice", "-key", "caller", "bob", "-au", "bob", "-ap", "b-pass", addr}
	if transport == "tcp" {
		args = append([]string{"-t", "t1"}, args...)
	}
	done := goSIPp(t, args...)
	h.Eventually("SIPp to subscribe", func() bool { return srv.Agent().Subscriptions() == 1 })
	h.Call("ring-alice", testharness.HarnessCallOptions{Name: "the call to alice"})
	if r := testharness.Await(h, done, "SIPp to finish"); r.err != nil {
		t.Fatalf("SIPp busy-lamp field failed: %v\n%s", r.err, tail(r.out, 3000))
	}
	if n := srv.Agent().Subscriptions(); n != 0 {
		t.Fatalf("%d subscriptions left after SIPp unsubscribed", n)
	}
}
