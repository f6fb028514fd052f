package cluster

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Busy-lamp field across nodes: alice's phone registers on b1 and rings
// for 2 s before it answers; bob's watcher subscribes to alice's dialog
// package on b2; a caller reaches alice through a flow on b3 (which
// sends the INVITE to her contact itself, so the call and its dialog live
// on b3). b2, which neither holds her registration nor the call, sends
// NOTIFYs with her dialog early (recipient), confirmed, terminated, one
// dialog with one Call-ID, versions increasing; and its merged presence
// (GET /api/presence/alice) shows ringing while she rings, then on-call,
// then available — as do b1's and b3's.
func TestBusyLampOfACallOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, "blf", "b", 3, nodeSpec{extra: []string{"--users", usersFile(t, "alice:wonderland", "bob:builder")}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 47000, RTPPortMax: 47499, Logger: testLogger(),
		AnswerDelay: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	watcher, err := testharness.NewWatcher() // after a phone: see TestUserRegisteredOnOneNodeCalledFromAnother
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	b2, err := netip.ParseAddrPort(nodes[1].sip)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Register(ctx, nodes[0].sip, "alice", "wonderland"); err != nil {
		t.Fatalf("alice registers at b1: %v", err)
	}
	presenceOf := func(n *nodeProc) string {
		var p presence.Presence
		getJSON(t, "http://"+n.http+"/api/presence/alice", &p)
		return p.Status.String()
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice available as "+n.name+" sees her", func() bool { return presenceOf(n) == "available" })
	}
	if _, code, err := watcher.Subscribe(ctx, b2, "alice", testharness.WatchOptions{Event: "dialog", Expires: 600, Username: "bob", Password: "builder"}); err != nil || code != 200 {
		t.Fatalf("SUBSCRIBE to alice's dialogs at b2: %d %v", code, err)
	}
	first, err := watcher.Next(ctx)
	if err != nil || !strings.Contains(first.Body, "<dialog-info") || testharness.StateOf(first.Body) != "" {
		t.Fatalf("first dialog NOTIFY from b2, before any call: %+v %v", first, err)
	}
	versions := []int{versionOf(first.Body)}

	caller := newPhone(t, 47500, 47999)
	type placed struct {
		pc  *testharness.PhoneCall
		err error
	}
	callDone := make(chan placed, 1)
	go func() {
		pc, err := caller.Call(ctx, "sip:alice@"+nodes[2].sip)
		callDone <- placed{pc, err}
	}()

	// While she rings (2 s): ringing in every node's merged presence (b2
	// first: it has neither her registration nor the call), and an early
	// dialog in b2's NOTIFYs.
	ringing := map[string]bool{}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && len(ringing) < len(nodes); time.Sleep(50 * time.Millisecond) {
		for _, n := range []*nodeProc{nodes[1], nodes[0], nodes[2]} {
			if !ringing[n.name] && presenceOf(n) == "ringing" {
				ringing[n.name] = true
			}
		}
	}
	for _, n := range nodes {
		if !ringing[n.name] {
			t.Errorf("%s never showed alice ringing while b3's call rang her phone", n.name)
		}
	}
	var callID string
	seen := map[string]bool{}
	next := func(want string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		for {
			n, err := watcher.Next(wctx)
			if err != nil {
				t.Fatalf("b2's dialog NOTIFYs never showed alice's dialog %s (saw %v): %v", want, seen, err)
			}
			versions = append(versions, versionOf(n.Body))
			st := testharness.StateOf(n.Body)
			if st == "" {
				continue
			}
			seen[st] = true
			if !strings.Contains(n.Body, `direction="recipient"`) {
				t.Errorf("alice's dialog is not the recipient's: %s", n.Body)
			}
			id := callIDOf(n.Body)
			if callID == "" {
				callID = id
			} else if id != callID {
				t.Errorf("dialog call-id %q, then %q: want one dialog", callID, id)
			}
			if st == want {
				return
			}
		}
	}
	next("early")
	var pc *testharness.PhoneCall
	select {
	case r := <-callDone:
		if r.err != nil {
			t.Fatalf("call alice at b3: %v", r.err)
		}
		pc = r.pc
	case <-ctx.Done():
		t.Fatal("the call to alice was not answered")
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	next("confirmed")
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice on-call as "+n.name+" sees her", func() bool { return presenceOf(n) == "on-call" })
	}
	if len(nodes[2].logLines("dialled a user registered on another node", "user=alice")) != 1 {
		t.Error("b3 did not dial alice's contact itself (the call is not on another node than her registration)")
	}
	var ac *testharness.PhoneCall
	select {
	case ac = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("alice's phone has no call")
	}
	if callID != ac.Leg.ID() {
		t.Errorf("b2 reported dialog %q, alice's phone is in %q", callID, ac.Leg.ID())
	}
	_ = pc.Hangup(ctx)
	next("terminated")
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice available again as "+n.name+" sees her", func() bool { return presenceOf(n) == "available" })
	}
	for i := 1; i < len(versions); i++ {
		if versions[i] <= versions[i-1] {
			t.Errorf("NOTIFY versions %v: not increasing", versions)
			break
		}
	}
	if !seen["early"] || !seen["confirmed"] || !seen["terminated"] {
		t.Errorf("dialog states seen at b2: %v", seen)
	}
}

var (
	versionRE = regexp.MustCompile(`<dialog-info [^>]*version="(\d+)"`)
	callIDRE  = regexp.MustCompile(`<dialog [^>]*call-id="([^"]*)"`)
)

// versionOf is a dialog-info body's version (-1 without one).
func versionOf(body string) int {
	m := versionRE.FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// callIDOf is the call-id of a dialog-info body's first dialog.
func callIDOf(body string) string {
	m := callIDRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}
