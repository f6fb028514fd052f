package cluster

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Cross-node move: phone P1 talks to the reflect route on m1 (hears its own
// 700 Hz back); P2 is in room "demo" on m2 (it called cluster-room-demo
// there, which joins m2's own room, whatever the cluster's grain says). An HTTP
// request to m3 moves P1's caller into m2's room: P1's media stays on m1
// and reaches m2 over RTP between the two nodes. P2 then hears P1's 700 Hz
// and P1 hears P2's 1200 Hz; when P1 hangs up, m2's room loses the relay
// leg and m1 has no call left.
func TestMoveCallerIntoRoomOnAnotherNode(t *testing.T) {
	bin := switchboardBinary(t)
	ep := startEtcd(t)
	name := fmt.Sprintf("move-%d", time.Now().UnixNano())
	var nodes []*nodeProc
	for i := range 3 {
		nodes = append(nodes, startNode(t, bin, nodeSpec{name: fmt.Sprintf("m%d", i+1), clusterName: name, provider: "etcd", etcd: ep, rtpMin: 40000 + 2000*i}))
	}
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n.name+" to see 3 members with their SIP addresses", func() bool {
			ms := n.members(t)
			for _, m := range ms {
				if m.SIP == "" && !m.Self {
					return false
				}
			}
			return len(ms) == 3
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 47000, RTPPortMax: 47999, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
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
	_ = p1.Hangup(ctx)
	waitFor(t, 10*time.Second, "m1 to have no call and m2 only P2's", func() bool {
		list, _ := nodes[1].calls(t)
		return len(list) == 1 && list[0].ID == p2.Leg.ID()
	})
}
