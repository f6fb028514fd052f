package cluster

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
)

func TestDecodeRequest(t *testing.T) {
	long := strings.Repeat("x", maxIDLen+1)
	for _, tc := range []struct {
		name, typ, data string
		want            any
		err             string
	}{
		{"list", msgListCalls, ``, struct{}{}, ""},
		{"list ignores a body", msgListCalls, `garbage`, struct{}{}, ""},
		{"hangup", msgHangup, `{"id":"abc@host"}`, hangupReq{ID: "abc@host"}, ""},
		{"hangup without id", msgHangup, `{}`, nil, "call ID"},
		{"hangup id too long", msgHangup, `{"id":"` + long + `"}`, nil, "call ID"},
		{"hangup not json", msgHangup, `{"id":`, nil, "unexpected end"},
		{"contacts", msgContacts, `{"user":"alice"}`, contactsReq{User: "alice"}, ""},
		{"contacts without user", msgContacts, `{"user":""}`, nil, "user name"},
		{"call set", msgCallSet, `{"node":"n1","addr":"127.0.0.1:7000","calls":[{"id":"c1","user":"tone"}]}`,
			callsResp{Node: "n1", Addr: "127.0.0.1:7000", Calls: []framework.CallInfo{{ID: "c1", User: "tone"}}}, ""},
		{"call set without addr", msgCallSet, `{"node":"n1"}`, nil, "address"},
		{"call set wrong shape", msgCallSet, `{"addr":"a","calls":{}}`, nil, "cannot unmarshal"},
		{"move", msgMove, `{"call_id":"c1","room":"demo","sip":"127.0.0.1:5060"}`, moveReq{LegID: "c1", Room: "demo", SIP: "127.0.0.1:5060"}, ""},
		{"move to a local room", msgMove, `{"call_id":"c1","room":"demo"}`, moveReq{LegID: "c1", Room: "demo"}, ""},
		{"move into a room name with a URI in it", msgMove, `{"call_id":"c1","room":"x@evil"}`, nil, "within bounds"},
		{"move without call", msgMove, `{"room":"demo"}`, nil, "within bounds"},
		{"move into a call", msgMove, `{"call_id":"l1","call":"c2@host","sip":"127.0.0.1:5060"}`, moveReq{LegID: "l1", Call: "c2@host", SIP: "127.0.0.1:5060"}, ""},
		{"move into a room and a call", msgMove, `{"call_id":"l1","call":"c2","room":"demo"}`, nil, "within bounds"},
		{"move nowhere", msgMove, `{"call_id":"l1"}`, nil, "within bounds"},
		{"move with a SIP address that is a URI", msgMove, `{"call_id":"l1","room":"demo","sip":"x@evil;lr"}`, nil, "within bounds"},
		{"call set with rooms", msgCallSet, `{"node":"n1","addr":"a:1","calls":[],"rooms":["red"]}`,
			callsResp{Node: "n1", Addr: "a:1", Calls: []framework.CallInfo{}, Rooms: []string{"red"}}, ""},
		{"call set with a roster and relays", msgCallSet,
			`{"addr":"a:1","calls":[],"users":[{"user":"alice","status":"ringing","online":0,"since":"1970-01-01T00:01:40Z","dialogs":[{"id":"c1","call_id":"c1","direction":"recipient","state":"early","remote":"sip:bob@x"}]}],"roster_seq":2,"roster_base":1,"relays":[{"leg":"j","call":"k"}]}`,
			callsResp{Addr: "a:1", Calls: []framework.CallInfo{}, RosterSeq: 2, RosterBase: 1, Relays: []relayRef{{Leg: "j", Call: "k"}},
				Users: []presence.Entry{{Presence: presence.Presence{User: "alice", Status: presence.Ringing, Since: time.Unix(100, 0).UTC()},
					Dialogs: []presence.Dialog{{ID: "c1", CallID: "c1", Direction: presence.Recipient, State: presence.DialogEarly, Remote: "sip:bob@x"}}}}}, ""},
		{"roster dialog without an ID", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","status":"on-call","dialogs":[{"state":"early"}]}]}`, nil, "dialog 0"},
		{"roster dialog terminated", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","status":"on-call","dialogs":[{"id":"c","state":"terminated"}]}]}`, nil, "live state"},
		{"roster dialog in an unknown state", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","dialogs":[{"id":"c","state":"ringing"}]}]}`, nil, "unknown dialog state"},
		{"roster dialog with a long identity", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","dialogs":[{"id":"c","remote":"` + strings.Repeat("x", maxURILen+1) + `"}]}]}`, nil, "dialog 0"},
		{"roster entry without a user", msgCallSet, `{"addr":"a:1","users":[{"status":"available"}]}`, nil, "user name"},
		{"roster entry with a negative count", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","online":-1}]}`, nil, "online count"},
		{"roster with too many dialogs", msgCallSet, `{"addr":"a:1","users":[{"user":"alice","dialogs":[` + strings.Repeat(`{"id":"c"},`, maxUserDialogs) + `{"id":"c"}]}]}`, nil, "at most"},
		{"relay without a call", msgCallSet, `{"addr":"a:1","relays":[{"leg":"j"}]}`, nil, "relay leg"},
		{"events", msgEvents, `{"session":"c1","from":3,"max":10,"wait_ms":1000}`, eventsReq{Session: "c1", From: 3, Max: 10, WaitMS: 1000}, ""},
		{"events of a room", msgEvents, `{"session":"room:red","max":1}`, eventsReq{Session: "room:red", Max: 1}, ""},
		{"events without a session", msgEvents, `{"max":10}`, nil, "want a session"},
		{"events, too many", msgEvents, `{"session":"c1","max":100000}`, nil, "want a session"},
		{"events, no max", msgEvents, `{"session":"c1"}`, nil, "want a session"},
		{"events, too long a wait", msgEvents, `{"session":"c1","max":1,"wait_ms":600000}`, nil, "want a session"},
		{"events, negative wait", msgEvents, `{"session":"c1","max":1,"wait_ms":-1}`, nil, "want a session"},
		{"events, from not a number", msgEvents, `{"session":"c1","max":1,"from":"x"}`, nil, "cannot unmarshal"},
		{"where room", msgWhereRoom, `{"room":"red"}`, whereRoomReq{Room: "red"}, ""},
		{"where room with a URI in it", msgWhereRoom, `{"room":"red@evil"}`, nil, "room name"},
		{"where room without a name", msgWhereRoom, `{}`, nil, "room name"},
		{"where room not json", msgWhereRoom, `[`, nil, "unexpected end"},
		{"unknown type", "switchboard.Nope", `{}`, nil, "unknown message type"},
		{"empty type", "", ``, nil, "unknown message type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRequest(&pcluster.GrainRequest{MessageTypeName: tc.typ, MessageData: []byte(tc.data)})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// FuzzDecodeRequest: whatever another node sends, decoding never panics,
// and what it accepts survives a round trip through its own encoding.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []struct{ typ, data string }{
		{msgListCalls, ``},
		{msgHangup, `{"id":"abc"}`},
		{msgContacts, `{"user":"alice"}`},
		{msgCallSet, `{"node":"n1","addr":"127.0.0.1:7000","calls":[{"id":"c1","start":"2026-11-30T06:00:00Z"}]}`},
		{msgCallSet, `{"addr":"a","calls":[{"start":"not a time"}]}`},
		{msgMove, `{"call_id":"c1","room":"demo","sip":"127.0.0.1:5060"}`},
		{msgMove, `{"call_id":"l1","call":"c2@host"}`},
		{msgWhereRoom, `{"room":"red"}`},
		{msgEvents, `{"session":"room:red","from":7,"max":256,"wait_ms":5000}`},
		{msgCallSet, `{"addr":"a","calls":[],"rooms":["red","blue"]}`},
		{msgCallSet, `{"addr":"a","calls":[],"rooms":["red"],"draining":true}`},
		{msgCallSet, `{"addr":"a","calls":[],"draining":"yes"}`},
		{msgCallSet, `{"addr":"a","calls":[],"users":[{"user":"alice","status":"on-call","online":1,"since":"2026-11-30T06:00:00Z"}]}`},
		{msgCallSet, `{"addr":"a","users":[{"user":"alice","status":"ringing","dialogs":[{"id":"c1","call_id":"c1","direction":"recipient","state":"early","local":"sip:alice@h","remote":"sip:bob@x","local_tag":"t1"}]}],"roster_seq":7,"roster_full":true}`},
		{msgCallSet, `{"addr":"a","users":[{"user":"bob","dialogs":[{"id":"x","state":"confirmed","direction":"initiator"}]}],"roster_seq":3,"roster_base":2,"relays":[{"leg":"j","call":"k"}]}`},
		{"x", `{}`},
	} {
		f.Add(s.typ, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		msg, err := decodeRequest(&pcluster.GrainRequest{MessageTypeName: typ, MessageData: data})
		if err != nil {
			return
		}
		if typ == msgListCalls {
			return
		}
		again, err := decodeRequest(&pcluster.GrainRequest{MessageTypeName: typ, MessageData: marshal(msg)})
		if err != nil {
			t.Fatalf("accepted %q, but not its own encoding: %v", data, err)
		}
		a, _ := json.Marshal(msg)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("round trip changed %s into %s", a, b)
		}
	})
}

func TestProviderNames(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Provider
		err  bool
	}{{"etcd", ProviderEtcd, false}, {"ETCD", ProviderEtcd, false}, {"automanaged", ProviderAutomanaged, false}, {"consul", 0, true}, {"", 0, true}} {
		got, err := ParseProvider(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseProvider(%q) = %v, %v", tc.in, got, err)
		}
		if !tc.err && got.String() != strings.ToLower(tc.in) {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.ToLower(tc.in))
		}
	}
	if s := Provider(9).String(); s != "Provider(9)" {
		t.Errorf("Provider(9).String() = %q", s)
	}
}

// The lowest surviving address writes one "node lost" CDR per call of a
// node that left; the others only drop its record; a late call list from
// the lost node and a repeated topology change write nothing more.
func TestLostNodeCDRs(t *testing.T) {
	member := func(port int32) *pcluster.Member { return &pcluster.Member{Host: "127.0.0.1", Port: port} }
	calls := func(ids ...string) map[string]framework.CallInfo {
		m := map[string]framework.CallInfo{}
		for i, id := range ids {
			m[id] = framework.CallInfo{ID: id, User: "tone", Start: time.Unix(int64(1000+i), 0)}
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		self      string
		dead      int32
		survivors []int32
		wantCDRs  []string
	}{
		{"lowest survivor writes", "127.0.0.1:7001", 7002, []int32{7001, 7003}, []string{"b1", "b2"}},
		{"a higher survivor does not", "127.0.0.1:7003", 7002, []int32{7001, 7003}, nil},
		{"the lowest died: the next writes", "127.0.0.1:7002", 7001, []int32{7002, 7003}, []string{"a1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []framework.CDR
			n := &Node{opts: Options{Node: "me", OnLostCall: func(c framework.CDR) { got = append(got, c) }},
				log: testLogger(), self: tc.self, dirty: make(chan struct{}, 1),
				members: map[string]*Member{}, records: map[string]*record{}, lost: map[string]time.Time{}, ended: map[string]struct{}{}}
			byPort := map[int32]map[string]framework.CallInfo{7001: calls("a1"), 7002: calls("b1", "b2"), 7003: calls("c1")}
			for _, p := range []int32{7001, 7002, 7003} {
				addr := member(p).Address()
				n.members[addr] = &Member{Addr: addr, Self: addr == tc.self}
				if addr != tc.self {
					n.records[addr] = &record{node: "peer", calls: byPort[p]}
				}
			}
			var ms []*pcluster.Member
			for _, p := range tc.survivors {
				ms = append(ms, member(p))
			}
			topo := &pcluster.ClusterTopology{Members: ms, Left: []*pcluster.Member{member(tc.dead)}}
			n.applyTopology(topo)
			n.applyTopology(topo) // the same change again
			n.storeRecord(callsResp{Node: "late", Addr: member(tc.dead).Address(), Calls: []framework.CallInfo{{ID: "late"}}})
			n.applyTopology(&pcluster.ClusterTopology{Members: ms})

			var ids []string
			for _, c := range got {
				ids = append(ids, c.CallID)
				if c.Cause != CauseNodeLost || c.User != "tone" || c.End.Before(c.Start) {
					t.Errorf("CDR %+v", c)
				}
			}
			if !reflect.DeepEqual(ids, tc.wantCDRs) {
				t.Errorf("CDRs for %v, want %v", ids, tc.wantCDRs)
			}
			if _, ok := n.records[member(tc.dead).Address()]; ok {
				t.Error("the dead node's record is kept")
			}
			if len(n.Members()) != 2 {
				t.Errorf("members %v, want the 2 survivors", n.Members())
			}
		})
	}
}

func TestMergePresence(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(s), 0) }
	p := func(st presence.Status, note string, online, since int) presence.Presence {
		return presence.Presence{User: "alice", Status: st, Note: note, Online: online, Since: at(since)}
	}
	for _, tc := range []struct {
		name string
		in   []presence.Presence
		want presence.Presence
	}{
		{"one node", []presence.Presence{p(presence.Available, "", 1, 1)}, p(presence.Available, "", 1, 1)},
		{"offline here, registered there", []presence.Presence{p(presence.Offline, "", 0, 1), p(presence.Available, "", 1, 2)}, p(presence.Available, "", 1, 2)},
		{"a call anywhere wins", []presence.Presence{p(presence.Away, "lunch", 1, 1), p(presence.OnCall, "", 1, 3), p(presence.Available, "", 1, 2)}, p(presence.OnCall, "", 3, 3)},
		{"away beats available, keeps its note", []presence.Presence{p(presence.Available, "", 1, 5), p(presence.Away, "lunch", 0, 4)}, p(presence.Away, "lunch", 1, 4)},
	} {
		var got presence.Presence
		for _, e := range tc.in {
			got = mergePresence(got, e)
		}
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
