package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
)

// A phone behind NAT (SIPp, its Contact a private address nothing can
// reach) registers through Kamailio, which adds a Path with the address
// the REGISTER came from (SIPp checks the 200 carries it). A caller then
// calls alice at every node: the node holding her registration and the
// two others (through the cluster) send the INVITE with her Path as its
// Route, Kamailio takes it to where she registered from, and the caller
// hears its tone echoed by her phone. Without the Path the INVITE would
// go to 10.255.255.1 and never arrive.
func TestPathReachesAPhoneBehindNAT(t *testing.T) {
	nodes := startCluster(t, "path", "p", 3, nodeSpec{extra: []string{"--users", usersFile(t, "alice:wonderland")}})
	k := startKamailio(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	alice := startSIPpPhone(t, "nat_user_register.xml", "nat_user_answer.xml", k.addr)
	registered := func() bool {
		for _, n := range nodes {
			if len(n.logLines("sip: registered", "user=alice")) > 0 {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(15 * time.Second); !registered(); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-alice.done:
			t.Fatalf("SIPp ended before alice registered: %s", alice.failure(err))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("alice did not register through kamailio in 15 s")
		}
	}
	caller := newPhone(t, 47500, 47999)
	for i, n := range nodes {
		pc, err := caller.Call(ctx, "sip:alice@"+n.sip)
		if err != nil {
			t.Fatalf("call alice at %s: %v", n.name, err)
		}
		f := float64(600 + 300*i)
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{f}, Duration: 20 * time.Second}))
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		if _, err := pc.WaitTone(wctx, f, 15); err != nil {
			t.Errorf("via %s: the caller does not hear its tone echoed by alice's phone behind NAT: %v", n.name, err)
		}
		wcancel()
		if err := pc.Hangup(ctx); err != nil {
			t.Errorf("via %s: hang-up: %v", n.name, err)
		}
		if got := k.lines("node " + n.sip + " sends INVITE"); len(got) != 1 {
			t.Errorf("via %s: kamailio relayed %d INVITEs from the node, want 1", n.name, len(got))
		}
	}
	for _, n := range nodes {
		for _, l := range n.logLines("sip: dialing", "10.255.255.1") {
			if !strings.Contains(l, "alice") {
				t.Errorf("%s dialled something else at the private address: %s", n.name, l)
			}
		}
	}
	alice.wait(t, ctx)
}
