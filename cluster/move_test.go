package cluster

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
)

// Cross-node move: phone P1 talks to the reflect route on m1 (hears its own
// 700 Hz back); P2 is in room "demo" on m2 (it called cluster-room-demo
// there, which joins m2's own room, whatever the cluster's grain says). An HTTP
// request to m3 moves P1's caller into m2's room: P1's media stays on m1
// and reaches m2 over RTP between the two nodes. P2 then hears P1's 700 Hz
// and P1 hears P2's 1200 Hz; when P1 hangs up, m2's room loses the relay
// leg and m1 has no call left.
func TestMoveCallerIntoRoomOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, "move", "m", 3, nodeSpec{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	p1, err := phone.Call(ctx, "sip:reflect@"+nodes[0].sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p1.Hangup(context.Background()) }()
	p2, err := callRelay(ctx, phone, RoomUserPrefix+"demo", nodes[1].sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Hangup(context.Background()) }()
	p1.Play(audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: 40 * time.Second}))
	p2.Play(audio.NewTone(audio.Tone{Freqs: []float64{1200}, Duration: 40 * time.Second}))
	if _, err := p1.WaitTone(ctx, 700, 15); err != nil {
		t.Fatalf("P1 does not hear its echo on m1 before the move: %v", err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+nodes[2].http+"/api/calls/"+p1.Leg.ID()+"/move?room=demo&node=m2", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST move at m3: %s, want 204", resp.Status)
	}
	if _, err := p2.WaitTone(ctx, 700, 15); err != nil {
		t.Errorf("P2 in m2's room does not hear P1: %v", err)
	}
	if _, err := p1.WaitTone(ctx, 1200, 20); err != nil {
		t.Errorf("P1 does not hear P2 from m2's room: %v", err)
	}
	if len(nodes[0].logLines("leg moved to another node", "call_id="+p1.Leg.ID(), "passthrough=true")) != 1 {
		t.Error("m1 did not log the cross-node move, passing packets through")
	}
	// The caller's media never left m1: P1's dialog is still with m1.
	list, _ := nodes[1].calls(t)
	onM1 := 0
	for _, c := range list {
		if c.Node == "m1" {
			onM1++
		}
	}
	if onM1 != 1 {
		t.Errorf("m1 has %d calls after the move, want 1 (the relay carrying P1): %+v", onM1, list)
	}
	// The session is listed once: the relay on m1, naming its far end on
	// m2 (a call there with the relay's ID, not listed again), and P2.
	// Every node lists the same.
	for _, n := range nodes {
		list, errText := n.calls(t)
		ids := map[string]int{}
		var relay *NodeCall
		for i, c := range list {
			ids[c.ID]++
			if c.Node == "m1" {
				relay = &list[i]
			}
		}
		for id, k := range ids {
			if k > 1 {
				t.Errorf("%s lists call %s %d times: %+v", n.name, id, k, list)
			}
		}
		if errText != "" || len(list) != 2 || relay == nil || len(relay.Relays) != 1 || relay.Relays[0].Node != "m2" || relay.Relays[0].Leg != relay.ID {
			t.Errorf("%s lists %+v (%s), want P2's call on m2 and the relay on m1 naming its end on m2", n.name, list, errText)
		}
	}
	_ = p1.Hangup(ctx)
	waitFor(t, 10*time.Second, "m1 to have no call and m2 only P2's", func() bool {
		list, _ := nodes[1].calls(t)
		return len(list) == 1 && list[0].ID == p2.Leg.ID()
	})
}

// Lost-node CDRs count calls, not relays: P1's call on l1 is moved into
// a room hosted on l2, so l2 holds P2's call and the far end of l1's
// relay (a call with the relay's ID). l2 is killed: l1 writes one "node
// lost" CDR, for P2's call, and none for the relay's far end (the relay
// is l1's own call, which goes on and ends with a CDR of l1's).
func TestLostRelayEndIsNotALostCall(t *testing.T) {
	nodes := startCluster(t, "lostrelay", "l", 2, nodeSpec{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	p1, err := phone.Call(ctx, "sip:reflect@"+nodes[0].sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p1.Hangup(context.Background()) }()
	// P2 joins a room the cluster hosts on l2 (its grain places it there),
	// through l2's own room route: no relay.
	room := roomOn(t, nodes[0], "lost", "l2")
	p2, err := phone.Call(ctx, "sip:room-"+room+"@"+nodes[1].sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Hangup(context.Background()) }()
	if code := httpPost(t, "http://"+nodes[0].http+"/api/calls/"+p1.Leg.ID()+"/move?room="+room); code != http.StatusNoContent {
		t.Fatalf("POST move at l1: %d, want 204", code)
	}
	// Wait until l1 knows l2's call list with the relay's far end in it.
	var relay string
	waitFor(t, 10*time.Second, "the relay listed on l1 with its far end on l2", func() bool {
		list, _ := nodes[0].calls(t)
		for _, c := range list {
			if c.Node == "l1" && len(c.Relays) == 1 && c.Relays[0].Node == "l2" {
				relay = c.ID
				return len(list) == 2
			}
		}
		return false
	})
	time.Sleep(300 * time.Millisecond) // l2's pushed list (every change, within 100 ms) has the far end too
	nodes[1].kill()
	lostCDRs := func(id string) int { return len(nodes[0].logLines("msg=cdr", "call_id="+id, `cause="node lost"`)) }
	waitFor(t, 30*time.Second, "l1 to write P2's node-lost CDR", func() bool { return lostCDRs(p2.Leg.ID()) == 1 })
	time.Sleep(500 * time.Millisecond)
	if n := lostCDRs(relay); n != 0 {
		t.Errorf("l1 wrote %d node-lost CDRs for the far end of its own relay %s, want 0", n, relay)
	}
	if len(nodes[0].logLines("a lost node's end of a relay", "call_id="+relay)) != 1 {
		t.Errorf("l1 did not log skipping the relay's far end %s", relay)
	}
	if all := nodes[0].logLines(`cause="node lost"`); len(all) != 1 {
		t.Errorf("node-lost CDRs: %d, want 1 (P2's call): %v", len(all), all)
	}
}
