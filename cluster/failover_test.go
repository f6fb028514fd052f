package cluster

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// Three nodes behind Kamailio with 60 calls up (harness phones calling the
// tone route through the proxy). One node is killed with SIGKILL: the
// calls on the other two keep their tone; every call of the dead node gets
// exactly one CDR with cause "node lost", written by a survivor; new calls
// through Kamailio succeed at once (failover after the dead node's
// timeout, then Kamailio's OPTIONS probing takes it out: calls placed 5 s
// after the kill are never sent to it).
func TestKillNodeDuringCallsBehindKamailio(t *testing.T) {
	nodes := startCluster(t, "kill", "f", 3, nodeSpec{})
	k := startKamailio(t, nodes)
	phone := newPhone(t, 46000, 47999)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	const calls = 60
	var all []*testharness.PhoneCall
	defer func() {
		var wg sync.WaitGroup
		for _, pc := range all {
			wg.Add(1)
			go func() {
				defer wg.Done()
				hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer hcancel()
				_ = pc.Hangup(hctx)
			}()
		}
		wg.Wait()
	}()
	for i := range calls {
		pc, err := phone.Call(ctx, "sip:tone@"+k.addr)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		all = append(all, pc)
	}
	list, errText := nodes[0].calls(t)
	if errText != "" || len(list) != calls {
		t.Fatalf("the cluster lists %d calls (%s), want %d", len(list), errText, calls)
	}
	onNode := map[string]string{}
	share := map[string]int{}
	for _, c := range list {
		onNode[c.ID] = c.Node
		share[c.Node]++
	}
	t.Logf("calls per node before the kill: %v", share)
	victim := nodes[1]
	if share[victim.name] == 0 {
		t.Fatalf("no call on %s", victim.name)
	}
	time.Sleep(300 * time.Millisecond) // past the 100 ms the call lists take to spread
	killed := time.Now()
	victim.kill()

	// New calls through Kamailio right after the kill.
	var firstSetup, maxSetup time.Duration
	var late []*testharness.PhoneCall
	for i := 0; time.Since(killed) < 8*time.Second; i++ {
		start := time.Now()
		pc, err := phone.Call(ctx, "sip:tone@"+k.addr)
		if err != nil {
			t.Fatalf("new call %d, %s after the kill: %v", i, start.Sub(killed).Round(time.Millisecond), err)
		}
		all = append(all, pc)
		maxSetup = max(maxSetup, time.Since(start))
		if i == 0 {
			firstSetup = time.Since(start)
			if _, err := pc.WaitTone(ctx, 1000, 10); err != nil {
				t.Errorf("the first call after the kill hears no tone: %v", err)
			}
		}
		if start.Sub(killed) > 5*time.Second {
			late = append(late, pc)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("first new call after the kill set up in %s, the slowest in %s; Kamailio failed over from the dead node %d times",
		firstSetup.Round(time.Millisecond), maxSetup.Round(time.Millisecond), len(k.lines("node sip:"+victim.sip+" failed INVITE")))
	if maxSetup > 10*time.Second {
		t.Errorf("a new call took %s to set up, want under 10 s", maxSetup)
	}
	for _, pc := range late {
		if lines := k.lines("new INVITE", "to node sip:"+victim.sip, "call_id="+pc.Leg.ID()); len(lines) > 0 {
			t.Errorf("a call placed over 5 s after the kill was still sent to the dead node: %s", lines[0])
		}
	}
	if len(late) == 0 {
		t.Error("no call was placed more than 5 s after the kill")
	}

	// The survivors' calls keep their audio; the lost ones get CDRs.
	survivors := []*nodeProc{nodes[0], nodes[2]}
	var lost []string
	kept := 0
	for _, pc := range all[:calls] {
		id := pc.Leg.ID()
		if onNode[id] == victim.name {
			lost = append(lost, id)
			continue
		}
		kept++
		if _, err := pc.WaitTone(ctx, 1000, 10); err != nil {
			t.Errorf("call %s on %s lost its tone after %s died: %v", id, onNode[id], victim.name, err)
		}
	}
	countCDRs := func(id string) int {
		n := 0
		for _, s := range survivors {
			n += len(s.logLines("msg=cdr", "call_id="+id, `cause="node lost"`))
		}
		return n
	}
	waitFor(t, 30*time.Second, "the lost calls' CDRs", func() bool {
		for _, id := range lost {
			if countCDRs(id) == 0 {
				return false
			}
		}
		return true
	})
	for _, id := range lost {
		if n := countCDRs(id); n != 1 {
			t.Errorf("lost call %s has %d node-lost CDRs, want 1", id, n)
		}
	}
	t.Logf("%d calls kept their tone on the survivors; %d calls of %s got node-lost CDRs; %d new calls after the kill",
		kept, len(lost), victim.name, len(all)-calls)
	for _, s := range survivors {
		for _, l := range s.logLines(`cause="node lost"`) {
			if !strings.Contains(l, "lost_node="+victim.name) {
				t.Errorf("%s wrote a node-lost CDR naming another node: %s", s.name, l)
			}
		}
	}
}

// SIGTERM drains a node behind Kamailio: its calls get BYE and a CDR of
// its own (no survivor writes "node lost" for them), it leaves the
// cluster cleanly, the other nodes' calls keep their tone, and new calls
// through Kamailio succeed.
func TestDrainNodeBehindKamailio(t *testing.T) {
	nodes := startCluster(t, "drain", "d", 3, nodeSpec{})
	k := startKamailio(t, nodes)
	phone := newPhone(t, 46000, 47999)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var all []*testharness.PhoneCall
	defer func() {
		for _, pc := range all {
			hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = pc.Hangup(hctx)
			hcancel()
		}
	}()
	for i := range 9 {
		pc, err := phone.Call(ctx, "sip:tone@"+k.addr)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		all = append(all, pc)
	}
	list, _ := nodes[0].calls(t)
	onNode := map[string]string{}
	for _, c := range list {
		onNode[c.ID] = c.Node
	}
	drained := nodes[1]
	time.Sleep(300 * time.Millisecond)
	drained.stop(t) // SIGTERM, waits for the exit
	for _, pc := range all {
		id := pc.Leg.ID()
		if onNode[id] == drained.name {
			select {
			case <-pc.Leg.Done():
			case <-ctx.Done():
				t.Fatalf("call %s on the drained node got no BYE", id)
			}
			if len(drained.logLines("msg=cdr", "call_id="+id)) != 1 {
				t.Errorf("the drained node wrote no CDR of its own for %s", id)
			}
			continue
		}
		if _, err := pc.WaitTone(ctx, 1000, 10); err != nil {
			t.Errorf("call %s on %s lost its tone: %v", id, onNode[id], err)
		}
	}
	for _, s := range []*nodeProc{nodes[0], nodes[2]} {
		waitFor(t, 10*time.Second, s.name+" to see 2 members", func() bool { return len(s.members(t)) == 2 })
	}
	time.Sleep(time.Second) // a wrong "node lost" CDR would be written by now
	for _, s := range []*nodeProc{nodes[0], nodes[2]} {
		if l := s.logLines(`cause="node lost"`); len(l) > 0 {
			t.Errorf("%s wrote node-lost CDRs for a node that left cleanly: %s", s.name, l[0])
		}
	}
	for i := range 6 {
		pc, err := phone.Call(ctx, "sip:tone@"+k.addr)
		if err != nil {
			t.Fatalf("new call %d after the drain: %v", i, err)
		}
		all = append(all, pc)
		if _, err := pc.WaitTone(ctx, 1000, 10); err != nil {
			t.Errorf("new call %d after the drain: %v", i, err)
		}
	}
}
