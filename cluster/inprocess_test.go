//go:build !race

// protoactor-go's cluster and remote are not race-clean: several nodes in
// one process under -race trip data races inside the library (gRPC's
// process-wide logger set by every remote start; the remote's block list
// written by gossip while its endpoint reader reads it). These in-process
// tests therefore build without -race only; the same behaviour is proven
// under -race by the multi-process tests (procs_test.go), one node per
// process as in production.

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// automanagedCluster starts n servers, each a node of one automanaged
// cluster in this process.
func automanagedCluster(t *testing.T, count int, h framework.Handler, onLost func(framework.CDR)) ([]*framework.Server, []*Node) {
	t.Helper()
	// protoactor's remote sets gRPC's process-wide logger as it starts,
	// a write the race detector flags against another node's gRPC
	// traffic in the same process (one node per process, as in
	// production, has no such race). So the nodes discover each other
	// only once every one has started: each node's automanaged health
	// port is reached through a gate that answers 503 until then.
	ports := make([]int, count)
	peers := make([]string, count)
	var open atomic.Bool
	for i := range ports {
		ports[i] = freeTCP(t)
		target, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(ports[i]))
		proxy := httputil.NewSingleHostReverseProxy(target)
		gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !open.Load() {
				http.Error(w, "not yet", http.StatusServiceUnavailable)
				return
			}
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(gate.Close)
		peers[i] = strings.TrimPrefix(gate.URL, "http://")
	}
	name := fmt.Sprintf("test-%d", time.Now().UnixNano())
	var srvs []*framework.Server
	var nodes []*Node
	for i := range count {
		srv := startServer(t, framework.Config{RTPPortMin: 32000 + 200*i, RTPPortMax: 32199 + 200*i}, h)
		n, err := Join(context.Background(), srv, Options{Name: name, Node: fmt.Sprintf("node%d", i+1), Addr: "127.0.0.1:0",
			Provider: ProviderAutomanaged, AutomanagedPort: ports[i], AutomanagedPeers: peers,
			SyncInterval: 500 * time.Millisecond, Logger: testLogger(), OnLostCall: onLost})
		if err != nil {
			t.Fatal(err)
		}
		n.Routes()
		t.Cleanup(n.Leave)
		srvs, nodes = append(srvs, srv), append(nodes, n)
	}
	open.Store(true)
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n.Name()+" to see every node", func() bool { return len(n.Members()) == count })
	}
	return srvs, nodes
}

// Three nodes of an automanaged cluster in one process, a call on each
// (in-memory legs playing a tone): any node lists all three calls with
// their node, over the Go API and over HTTP; DELETE on node 1 hangs up the
// call on node 3, whose phone is hung up while the other two keep hearing
// their tone.
func TestAutomanagedListAndHangupAcrossNodes(t *testing.T) {
	srvs, nodes := automanagedCluster(t, 3, toneFlow, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	legs := make([]*testharness.MemoryLeg, 3)
	phones := make([]*testharness.PhoneCall, 3)
	for i, srv := range srvs {
		legs[i], phones[i] = testharness.NewMemoryCall(testharness.MemoryCallOptions{User: fmt.Sprintf("tone%d", i+1), From: "sip:caller@memory"})
		srv.StartCall(legs[i])
		waitFor(t, 5*time.Second, "answer", legs[i].Answered)
	}
	for _, n := range nodes {
		calls, err := n.Calls(ctx)
		if err != nil {
			t.Fatalf("%s: Calls: %v", n.Name(), err)
		}
		got := map[string]string{}
		for _, c := range calls {
			got[c.ID] = c.Node
		}
		for i, l := range legs {
			if want := fmt.Sprintf("node%d", i+1); got[l.ID()] != want {
				t.Errorf("%s lists call %s on %q, want %q (all: %+v)", n.Name(), l.ID(), got[l.ID()], want, calls)
			}
		}
		if len(calls) != 3 {
			t.Errorf("%s lists %d calls, want 3", n.Name(), len(calls))
		}
	}
	// Over HTTP, from node 2.
	resp, err := http.Get("http://" + srvs[1].HTTPAddr() + "/api/calls")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Calls []NodeCall `json:"calls"`
		Error string     `json:"error"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(body.Calls) != 3 || body.Error != "" {
		t.Fatalf("GET /api/calls: %d %+v %v", resp.StatusCode, body, err)
	}
	// DELETE the call of node 3 at node 1.
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+srvs[0].HTTPAddr()+"/api/calls/"+legs[2].ID(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d, want 204", resp.StatusCode)
	}
	select {
	case <-legs[2].Done():
	case <-ctx.Done():
		t.Fatal("node 3's phone was not hung up")
	}
	waitFor(t, 5*time.Second, "node 3 to have no call", func() bool { return len(srvs[2].Calls()) == 0 })
	// An unknown call is 404.
	req, _ = http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+srvs[0].HTTPAddr()+"/api/calls/no-such-call", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE unknown: %d, want 404", resp.StatusCode)
	}
	for _, i := range []int{0, 1} {
		if _, err := phones[i].WaitTone(ctx, 1000, 10); err != nil {
			t.Errorf("phone on node %d lost its tone: %v", i+1, err)
		}
		_ = phones[i].Hangup(ctx)
	}
}
