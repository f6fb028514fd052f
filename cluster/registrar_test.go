package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A phone registered as alice on node r1 is called by a flow on node r3
// (a caller dials sip:alice@r3; the extensions route Dials alice): r3
// learns alice's contact from r1 over the cluster and sends the INVITE to
// it itself, so the call lives on r3. Audio flows both ways (each side
// hears the other's tone). An unregistered user still gets 480.
// Meanwhile bob's SIP watcher, subscribed to alice's presence on r2 (where
// alice neither registered nor calls), gets NOTIFYs closed → open →
// on-the-phone → open: r2's notifier serves the cluster's presence.
func TestUserRegisteredOnOneNodeCalledFromAnother(t *testing.T) {
	nodes := startCluster(t, "reg", "r", 3, nodeSpec{extra: []string{"--users", usersFile(t, "alice:wonderland", "bob:builder")}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := newPhone(t, 47000, 47499)
	// bob watches alice's presence over SIP on r2 before she registers
	// (the watcher's SIP stack starts after a phone's: sip.NewAgent sets a
	// sipgo limit once per process, which a running stack would race with).
	watcher, err := testharness.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	r2, err := netip.ParseAddrPort(nodes[1].sip)
	if err != nil {
		t.Fatal(err)
	}
	if _, code, err := watcher.Subscribe(ctx, r2, "alice", testharness.WatchOptions{Event: "presence", Expires: 600, Username: "bob", Password: "builder"}); err != nil || code != 200 {
		t.Fatalf("SUBSCRIBE to alice's presence at r2: %d %v", code, err)
	}
	if n, err := watcher.Next(ctx); err != nil || !strings.Contains(n.Body, "<basic>closed</basic>") {
		t.Fatalf("first presence NOTIFY from r2 while alice is registered nowhere: %+v %v", n, err)
	}
	sipSees := func(what string, cond func(testharness.Notify) bool) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		if _, err := watcher.WaitFor(wctx, cond); err != nil {
			t.Errorf("r2's NOTIFYs never showed alice %s: %v", what, err)
		}
	}
	isOpen := func(n testharness.Notify) bool {
		return strings.Contains(n.Body, "<basic>open</basic>") && !strings.Contains(n.Body, "on-the-phone")
	}

	if err := alice.Register(ctx, nodes[0].sip, "alice", "wonderland"); err != nil {
		t.Fatalf("alice registers at r1: %v", err)
	}
	caller := newPhone(t, 47500, 47999)
	sipSees("open (registered on r1)", isOpen)
	// Her presence is seen from r3: available on r1 beats offline on r3.
	var roster struct {
		Users []presence.Presence `json:"users"`
		Error string              `json:"error"`
	}
	getJSON(t, "http://"+nodes[2].http+"/api/presence", &roster)
	status := map[string]string{}
	for _, u := range roster.Users {
		status[u.User] = u.Status.String()
	}
	if roster.Error != "" || status["alice"] != "available" || status["bob"] != "offline" {
		t.Errorf("r3's cluster-wide presence: %+v (%s), want alice available, bob offline", roster.Users, roster.Error)
	}

	// Every node's merged view, pushed: alice available everywhere.
	presenceOf := func(n *nodeProc) string {
		var p presence.Presence
		getJSON(t, "http://"+n.http+"/api/presence/alice", &p)
		return p.Status.String()
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice available as "+n.name+" sees her", func() bool { return presenceOf(n) == "available" })
	}
	// r2 watches the merged presence while r3 calls alice (registered on r1).
	watch := make(chan presence.Presence, 64)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go watchPresenceSSE(wctx, "http://"+nodes[1].http+"/api/presence/events", watch)

	pc, err := caller.Call(ctx, "sip:alice@"+nodes[2].sip)
	if err != nil {
		t.Fatalf("call alice at r3: %v", err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	var ac *testharness.PhoneCall
	select {
	case ac = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("alice's phone did not ring")
	}
	pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 20 * time.Second}))
	ac.Play(audio.NewTone(audio.Tone{Freqs: []float64{1200}, Duration: 20 * time.Second}))
	if _, err := ac.WaitTone(ctx, 700, 15); err != nil {
		t.Errorf("alice does not hear the caller: %v", err)
	}
	if _, err := pc.WaitTone(ctx, 1200, 20); err != nil {
		t.Errorf("the caller does not hear alice: %v", err)
	}
	// On a call on r3, registered on r1: the same on every node.
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice on-call as "+n.name+" sees her", func() bool { return presenceOf(n) == "on-call" })
	}
	if !sawStatus(watch, "alice", "on-call", 5*time.Second) {
		t.Error("r2's presence stream did not show alice on a call")
	}
	sipSees("on the phone (called from r3)", func(n testharness.Notify) bool {
		return strings.Contains(n.Body, "<basic>open</basic>") && strings.Contains(n.Body, "<rpid:on-the-phone/>")
	})
	list, errText := nodes[0].calls(t)
	if errText != "" || len(list) != 1 || list[0].Node != "r3" || list[0].ID != pc.Leg.ID() {
		t.Errorf("the cluster lists %+v (%s), want the one call on r3", list, errText)
	}
	if len(nodes[2].logLines("dialled a user registered on another node", "user=alice")) != 1 {
		t.Error("r3 did not log dialling alice's contact learnt from another node")
	}
	_ = pc.Hangup(ctx)
	select {
	case <-ac.Leg.Done():
	case <-ctx.Done():
		t.Fatal("alice's leg did not end with the caller's hangup")
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "alice available again as "+n.name+" sees her", func() bool { return presenceOf(n) == "available" })
	}
	if !sawStatus(watch, "alice", "available", 5*time.Second) {
		t.Error("r2's presence stream did not show alice back from the call")
	}
	sipSees("open again after the call", isOpen)

	// bob is registered nowhere: 480 from r3, as from a single node.
	_, err = caller.Call(ctx, "sip:bob@"+nodes[2].sip)
	if err == nil || !containsStatus(err, 480) {
		t.Errorf("calling unregistered bob: %v, want 480", err)
	}
}

func containsStatus(err error, code int) bool {
	var se *sip.StatusError
	return errors.As(err, &se) && se.Code == code
}

// alice registers through Kamailio (which picks a node by hashing her
// AoR), then is called at each node directly: on the node that holds her
// registration the call is local SIP, on the others it goes through the
// cluster; either way the node sends the INVITE to the registration's
// source, Kamailio, which relays it to alice's contact. Every call has
// audio both ways.
func TestUserRegisteredThroughKamailioCalledFromEveryNode(t *testing.T) {
	nodes := startCluster(t, "regk", "q", 3, nodeSpec{extra: []string{"--users", usersFile(t, "alice:wonderland")}})
	k := startKamailio(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	alice := newPhone(t, 47000, 47499)
	if err := alice.Register(ctx, k.addr, "alice", "wonderland"); err != nil {
		t.Fatalf("alice registers through kamailio: %v", err)
	}
	caller := newPhone(t, 47500, 47999)
	remote := 0
	for _, n := range nodes {
		pc, err := caller.Call(ctx, "sip:alice@"+n.sip)
		if err != nil {
			t.Fatalf("call alice at %s: %v", n.name, err)
		}
		var ac *testharness.PhoneCall
		select {
		case ac = <-alice.Incoming():
		case <-ctx.Done():
			t.Fatalf("alice's phone did not ring for %s", n.name)
		}
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 20 * time.Second}))
		ac.Play(audio.NewTone(audio.Tone{Freqs: []float64{1200}, Duration: 20 * time.Second}))
		if _, err := ac.WaitTone(ctx, 700, 15); err != nil {
			t.Errorf("via %s: alice does not hear the caller: %v", n.name, err)
		}
		if _, err := pc.WaitTone(ctx, 1200, 20); err != nil {
			t.Errorf("via %s: the caller does not hear alice: %v", n.name, err)
		}
		if len(k.lines("node "+n.sip+" sends INVITE", "call_id="+ac.Leg.ID())) != 1 {
			t.Errorf("via %s: kamailio did not relay the node's INVITE to alice", n.name)
		}
		if len(n.logLines("dialled a user registered on another node", "user=alice")) > 0 {
			remote++
		}
		_ = pc.Hangup(ctx)
		select {
		case <-ac.Leg.Done():
		case <-ctx.Done():
			t.Fatalf("via %s: alice's leg did not end", n.name)
		}
	}
	if remote != 2 {
		t.Errorf("%d nodes reached alice through the cluster, want 2 (the third holds her registration)", remote)
	}
}

// watchPresenceSSE sends the presences of url's stream to out until ctx ends.
func watchPresenceSSE(ctx context.Context, url string, out chan<- presence.Presence) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if b, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var p presence.Presence
			if json.Unmarshal([]byte(b), &p) == nil {
				select {
				case out <- p:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// sawStatus waits for user's status on the stream.
func sawStatus(c <-chan presence.Presence, user, status string, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case p := <-c:
			if p.User == user && p.Status.String() == status {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// A phone registered over TCP on node t1 (SIPp, which echoes the audio it
// gets) is called by a flow on node t3: t3 cannot reach t1's connection,
// so it calls t1 (cluster-user-alice), whose UserHandler dials alice over
// her TCP connection and bridges. The caller hears its own tone come back
// through t3 → t1 → alice → t1 → t3. The cluster lists the session once.
func TestTCPUserRegisteredOnOneNodeCalledFromAnother(t *testing.T) {
	nodes := startCluster(t, "tcpreg", "t", 3, nodeSpec{extra: []string{"--users", usersFile(t, "alice:wonderland")}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := startSIPpPhone(t, "tcp_user_register.xml", "tcp_user_answer.xml", nodes[0].sip, "-t", "t1")
	presenceOf := func(n *nodeProc) string {
		var p presence.Presence
		getJSON(t, "http://"+n.http+"/api/presence/alice", &p)
		return p.Status.String()
	}
	waitFor(t, 10*time.Second, "alice registered over TCP at t1, as t3 sees her", func() bool { return presenceOf(nodes[2]) == "available" })

	caller := newPhone(t, 47500, 47999)
	pc, err := caller.Call(ctx, "sip:alice@"+nodes[2].sip)
	if err != nil {
		t.Fatalf("call alice at t3: %v", err)
	}
	pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 20 * time.Second}))
	if _, err := pc.WaitTone(ctx, 700, 15); err != nil {
		t.Errorf("the caller does not hear its tone echoed by alice's TCP phone: %v", err)
	}
	if len(nodes[2].logLines("through that node", "user=alice")) != 1 {
		t.Error("t3 did not log dialling alice through t1")
	}
	// One session: the caller's call on t3, naming its relay to t1 (t1's
	// end of it, the call that dials alice, is not listed again).
	waitFor(t, 5*time.Second, "t2 to list the call once, on t3, with its relay to t1", func() bool {
		list, errText := nodes[1].calls(t)
		return errText == "" && len(list) == 1 && list[0].Node == "t3" && list[0].ID == pc.Leg.ID() &&
			len(list[0].Relays) == 1 && list[0].Relays[0].Node == "t1"
	})
	_ = pc.Hangup(ctx)
	alice.wait(t, ctx)
}
