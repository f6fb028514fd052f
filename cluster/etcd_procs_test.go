package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// Three switchboard processes with membership in a real etcd. Harness
// phones call the "tone" route of each node directly (n2 twice). Any node
// lists all four calls with their node; DELETE /api/calls/{id} on n1 hangs
// up n3's call (its phone gets BYE). Then n2 is killed with SIGKILL: the
// survivors see it leave, one of them writes a CDR with cause "node lost"
// for each of n2's two calls, and n1's call keeps its tone throughout.
func TestEtcdNodesListHangupAndLostNode(t *testing.T) {
	nodes := startCluster(t, "etcd-procs", "n", 3, nodeSpec{})

	phone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 47000, RTPPortMax: 47999, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	on := []int{0, 1, 2, 1} // the node each call goes to
	calls := make([]*testharness.PhoneCall, len(on))
	for i, n := range on {
		pc, err := phone.Call(ctx, "sip:tone@"+nodes[n].sip)
		if err != nil {
			t.Fatalf("call %d to %s: %v", i, nodes[n].name, err)
		}
		defer func() {
			hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second) // the killed node's calls get no answer
			defer hcancel()
			_ = pc.Hangup(hctx)
		}()
		calls[i] = pc
	}
	wantNode := map[string]string{}
	for i, n := range on {
		wantNode[calls[i].Leg.ID()] = nodes[n].name
	}
	for _, n := range nodes {
		list, errText := n.calls(t)
		if errText != "" || len(list) != len(calls) {
			t.Fatalf("%s lists %d calls (error %q), want %d: %+v", n.name, len(list), errText, len(calls), list)
		}
		for _, c := range list {
			if wantNode[c.ID] != c.Node || c.User != "tone" {
				t.Errorf("%s lists call %s on %q for %q, want on %q for tone", n.name, c.ID, c.Node, c.User, wantNode[c.ID])
			}
		}
	}
	// n1 hangs up n3's call.
	if code := httpDelete(t, "http://"+nodes[0].http+"/api/calls/"+calls[2].Leg.ID()); code != http.StatusNoContent {
		t.Fatalf("DELETE n3's call at n1: %d, want 204", code)
	}
	select {
	case <-calls[2].Leg.Done():
	case <-ctx.Done():
		t.Fatal("n3's call was not hung up")
	}
	if code := httpDelete(t, "http://"+nodes[0].http+"/api/calls/"+calls[2].Leg.ID()); code != http.StatusNotFound {
		t.Errorf("DELETE of a call already ended: %d, want 404", code)
	}

	// Kill n2 with its two calls up.
	time.Sleep(300 * time.Millisecond) // past the 100 ms the call lists take to spread
	killed := time.Now()
	nodes[1].kill()
	lost := []string{calls[1].Leg.ID(), calls[3].Leg.ID()}
	survivors := []*nodeProc{nodes[0], nodes[2]}
	waitFor(t, 30*time.Second, "a survivor to write CDRs for n2's calls", func() bool {
		for _, id := range lost {
			found := 0
			for _, s := range survivors {
				found += len(s.logLines("msg=cdr", "call_id="+id, `cause="node lost"`))
			}
			if found == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("n2's calls had their CDRs %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	for _, id := range lost {
		n := 0
		for _, s := range survivors {
			n += len(s.logLines("msg=cdr", "call_id="+id, `cause="node lost"`))
		}
		if n != 1 {
			t.Errorf("call %s has %d node-lost CDRs, want exactly 1", id, n)
		}
	}
	for _, s := range survivors {
		waitFor(t, 10*time.Second, s.name+" to see 2 members", func() bool { return len(s.members(t)) == 2 })
	}
	// The survivors' call goes on with its audio.
	if _, err := calls[0].WaitTone(ctx, 1000, 10); err != nil {
		t.Errorf("n1's call lost its tone after n2 died: %v", err)
	}
	list, _ := nodes[2].calls(t)
	if len(list) != 1 || list[0].ID != calls[0].Leg.ID() {
		t.Errorf("after n2's death n3 lists %+v, want only n1's call", list)
	}
}

// A node whose etcd has gone away still stops on SIGTERM, within the
// bounded time its deregistration may take.
func TestNodeStopsWhenEtcdIsGone(t *testing.T) {
	bin := switchboardBinary(t)
	ep, killEtcd := startEtcdKillable(t)
	n := startNode(t, bin, nodeSpec{name: "lonely", clusterName: fmt.Sprintf("gone-%d", time.Now().UnixNano()), provider: "etcd", etcd: ep, rtpMin: 50000})
	killEtcd()
	start := time.Now()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the node did not stop in 20 s after SIGTERM with etcd gone")
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(100*time.Millisecond))
}

// Three switchboard processes with automanaged membership (no etcd): each
// sees the others, and any lists a call of another and hangs it up.
func TestAutomanagedNodesAsProcesses(t *testing.T) {
	bin := switchboardBinary(t)
	name := fmt.Sprintf("auto-procs-%d", time.Now().UnixNano())
	ports := []int{freeTCP(t), freeTCP(t), freeTCP(t)}
	var peers []string
	for _, p := range ports {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", p))
	}
	var nodes []*nodeProc
	for i := range 3 {
		nodes = append(nodes, startNode(t, bin, nodeSpec{name: fmt.Sprintf("a%d", i+1), clusterName: name, provider: "automanaged",
			autoPort: ports[i], autoPeers: peers, rtpMin: 50000 + 2000*i}))
	}
	for _, n := range nodes {
		waitFor(t, 30*time.Second, n.name+" to see 3 members", func() bool { return len(n.members(t)) == 3 })
	}
	phone := newPhone(t, 47000, 47999)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := phone.Call(ctx, "sip:tone@"+nodes[2].sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	list, errText := nodes[0].calls(t)
	if errText != "" || len(list) != 1 || list[0].Node != "a3" || list[0].ID != pc.Leg.ID() {
		t.Fatalf("a1 lists %+v (%s), want the call on a3", list, errText)
	}
	if code := httpDelete(t, "http://"+nodes[1].http+"/api/calls/"+pc.Leg.ID()); code != http.StatusNoContent {
		t.Fatalf("DELETE at a2: %d, want 204", code)
	}
	select {
	case <-pc.Leg.Done():
	case <-ctx.Done():
		t.Fatal("the call on a3 was not hung up")
	}
}
