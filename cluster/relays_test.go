package cluster

import (
	"reflect"
	"slices"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/framework"
)

// Node.Calls lists a session that spans nodes once: the far end of a
// relay is folded into the call that placed it.
func TestFoldRelays(t *testing.T) {
	call := func(node, id string) NodeCall {
		return NodeCall{Node: node, CallInfo: framework.CallInfo{ID: id}}
	}
	with := func(c NodeCall, relays ...RelayLeg) NodeCall { c.Relays = relays; return c }
	for _, tc := range []struct {
		name string
		all  []NodeCall
		refs map[string][]relayRef
		want []NodeCall
	}{
		{"no relays", []NodeCall{call("m1", "a"), call("m2", "b")}, nil, []NodeCall{call("m1", "a"), call("m2", "b")}},
		{"a moved leg's relay: the same ID on both nodes",
			[]NodeCall{call("m1", "r"), call("m2", "p2"), call("m2", "r")},
			map[string][]relayRef{"m1": {{Leg: "r", Call: "r"}}},
			[]NodeCall{with(call("m1", "r"), RelayLeg{Leg: "r", Node: "m2"}), call("m2", "p2")}},
		{"a caller bridged to a room on another node",
			[]NodeCall{call("x", "k"), call("y", "j"), call("y", "other")},
			map[string][]relayRef{"x": {{Leg: "j", Call: "k"}}},
			[]NodeCall{with(call("x", "k"), RelayLeg{Leg: "j", Node: "y"}), call("y", "other")}},
		{"the far end not listed (yet)",
			[]NodeCall{call("x", "k")},
			map[string][]relayRef{"x": {{Leg: "j", Call: "k"}}},
			[]NodeCall{with(call("x", "k"), RelayLeg{Leg: "j"})}},
		{"the placing call not listed: the far end stays",
			[]NodeCall{call("y", "j")},
			map[string][]relayRef{"x": {{Leg: "j", Call: "k"}}},
			[]NodeCall{call("y", "j")}},
		{"two relays of one call",
			[]NodeCall{call("x", "k"), call("y", "j1"), call("z", "j2")},
			map[string][]relayRef{"x": {{Leg: "j1", Call: "k"}, {Leg: "j2", Call: "k"}}},
			[]NodeCall{with(call("x", "k"), RelayLeg{Leg: "j1", Node: "y"}, RelayLeg{Leg: "j2", Node: "z"})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := foldRelays(tc.all, tc.refs)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// A lost node's relay ends get no "node lost" CDR (the call that placed
// the relay has its own); its own calls, relays it placed included, do —
// once, also when both ends of a relay are lost together.
func TestLostNodeCDRsCountCallsNotRelays(t *testing.T) {
	member := func(port int32) *pcluster.Member { return &pcluster.Member{Host: "127.0.0.1", Port: port} }
	info := func(id string) framework.CallInfo {
		return framework.CallInfo{ID: id, User: "u", Start: time.Unix(1000, 0)}
	}
	// 7002 placed relay r (a moved leg: call r holds leg r) whose far end
	// is call r on 7003, and bridged its caller k to a room on 7003 through
	// leg j (call j there). 7003 also has its own call c.
	records := map[int32]*record{
		7002: {node: "m2", calls: map[string]framework.CallInfo{"r": info("r"), "k": info("k")}, relays: map[string]string{"r": "r", "j": "k"}},
		7003: {node: "m3", calls: map[string]framework.CallInfo{"r": info("r"), "j": info("j"), "c": info("c")}},
	}
	for _, tc := range []struct {
		name      string
		dead      []int32
		survivors []int32
		want      []string
	}{
		{"the relays' far ends die", []int32{7003}, []int32{7001, 7002}, []string{"c"}},
		{"the relays' node dies", []int32{7002}, []int32{7001, 7003}, []string{"k", "r"}},
		{"both die", []int32{7002, 7003}, []int32{7001}, []string{"c", "k", "r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			self := member(7001).Address()
			n := &Node{opts: Options{Node: "m1", OnLostCall: func(c framework.CDR) { got = append(got, c.CallID) }},
				log: testLogger(), self: self, dirty: make(chan struct{}, 1),
				members: map[string]*Member{self: {Addr: self, Self: true}}, records: map[string]*record{}, lost: map[string]time.Time{}, ended: map[string]struct{}{}}
			for p, r := range records {
				addr := member(p).Address()
				n.members[addr] = &Member{Addr: addr}
				rr := *r
				n.records[addr] = &rr
			}
			var ms, left []*pcluster.Member
			for _, p := range tc.survivors {
				ms = append(ms, member(p))
			}
			for _, p := range tc.dead {
				left = append(left, member(p))
			}
			n.applyTopology(&pcluster.ClusterTopology{Members: ms, Left: left})
			slices.Sort(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("node-lost CDRs for %v, want %v", got, tc.want)
			}
		})
	}
}
