package cluster

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-voice/switchboard/presence"
)

func rosterEntry(user string, st presence.Status, online int, dialogs ...presence.Dialog) presence.Entry {
	return presence.Entry{Presence: presence.Presence{User: user, Status: st, Online: online, Since: time.Unix(100, 0)}, Dialogs: dialogs}
}

// A sender's pushes and a receiver's record stay equal through deltas,
// and a receiver out of step asks for the whole roster instead of
// applying a delta on the wrong base.
func TestRosterDeltas(t *testing.T) {
	ring := presence.Dialog{ID: "c1", CallID: "c1", Direction: presence.Recipient, State: presence.DialogEarly, Remote: "sip:bob@x"}
	talk := ring
	talk.State = presence.DialogConfirmed
	type step struct {
		name      string
		roster    []presence.Entry
		lose      bool     // the receiver drops the push (a restart): the sender does not know
		wantDelta []string // users in the delta
		wantAsk   bool     // the receiver asks for the whole roster
		wantFull  bool     // the sender sends the whole roster
	}
	alice, bob := "alice", "bob"
	steps := []step{
		{"first push is whole", []presence.Entry{rosterEntry(alice, presence.Available, 1), rosterEntry(bob, presence.Offline, 0)}, false, []string{alice, bob}, false, true},
		{"nothing changed: an empty delta", []presence.Entry{rosterEntry(alice, presence.Available, 1), rosterEntry(bob, presence.Offline, 0)}, false, nil, false, false},
		{"alice rings", []presence.Entry{rosterEntry(alice, presence.Ringing, 1, ring), rosterEntry(bob, presence.Offline, 0)}, false, []string{alice}, false, false},
		{"alice talks, dropped by the receiver", []presence.Entry{rosterEntry(alice, presence.OnCall, 1, talk), rosterEntry(bob, presence.Offline, 0)}, true, []string{alice}, false, false},
		{"bob registers: out of step, asks", []presence.Entry{rosterEntry(alice, presence.OnCall, 1, talk), rosterEntry(bob, presence.Available, 1)}, false, []string{bob}, true, false},
		{"then the whole roster", []presence.Entry{rosterEntry(alice, presence.OnCall, 1, talk), rosterEntry(bob, presence.Available, 1)}, false, nil, false, true},
		{"bob gone from the store, alice's call over", []presence.Entry{rosterEntry(alice, presence.Available, 1)}, false, []string{alice, bob}, false, false},
	}
	var s rosterSender
	s.needFull = map[string]bool{}
	var users map[string]presence.Entry
	var have uint64
	for _, st := range steps {
		p := s.next(st.roster)
		var delta []string
		for _, e := range p.delta {
			delta = append(delta, e.User)
		}
		if !reflect.DeepEqual(delta, st.wantDelta) {
			t.Errorf("%s: delta of %v, want %v", st.name, delta, st.wantDelta)
		}
		cs := callsResp{Addr: "a:1", RosterSeq: p.seq, RosterBase: p.base, Users: p.delta}
		full := p.base == 0 || s.needFull["r"]
		if full != st.wantFull {
			t.Errorf("%s: whole roster sent %v, want %v", st.name, full, st.wantFull)
		}
		if full {
			cs.Users, cs.RosterFull, cs.RosterBase = p.full, true, 0
		}
		// Through the wire, as another node decodes it.
		var got callsResp
		if err := json.Unmarshal(marshal(cs), &got); err != nil {
			t.Fatal(err)
		}
		if st.lose {
			continue
		}
		var ok bool
		users, have, ok = applyRoster(users, have, got)
		if ok == st.wantAsk {
			t.Errorf("%s: receiver asks for the whole roster: %v, want %v", st.name, !ok, st.wantAsk)
		}
		if !ok {
			s.needFull["r"] = true
			continue
		}
		delete(s.needFull, "r")
		want := map[string]presence.Entry{}
		for _, e := range st.roster {
			want[e.User] = e
		}
		for u := range users {
			if _, in := want[u]; !in {
				want[u] = presence.Entry{Presence: presence.Presence{User: u}} // gone: offline
			}
		}
		if len(users) != len(want) {
			t.Fatalf("%s: receiver holds %v, want %v", st.name, users, want)
		}
		for u, e := range want {
			if !sameEntry(users[u], e) {
				t.Errorf("%s: receiver holds %s as %+v, want %+v", st.name, u, users[u], e)
			}
		}
	}
	// The step "alice talks" was dropped, and the one after it carried
	// only bob: without the sequence check the receiver would show alice
	// ringing for ever.
	if s.seq != uint64(len(steps)) {
		t.Errorf("seq %d after %d pushes", s.seq, len(steps))
	}
}

// A record without a roster takes no delta; a message without a roster
// (RosterSeq 0, a listing) leaves the record's users alone.
func TestApplyRosterEdges(t *testing.T) {
	one := map[string]presence.Entry{"alice": rosterEntry("alice", presence.Available, 1)}
	for _, tc := range []struct {
		name     string
		users    map[string]presence.Entry
		have     uint64
		cs       callsResp
		wantOK   bool
		wantHave uint64
		wantLen  int
	}{
		{"delta without a roster yet", nil, 0, callsResp{RosterSeq: 5, RosterBase: 4}, false, 0, 0},
		{"no roster in the message", one, 3, callsResp{}, true, 3, 1},
		{"whole roster replaces", one, 3, callsResp{RosterSeq: 1, RosterFull: true}, true, 1, 0},
		{"delta on the right base", one, 3, callsResp{RosterSeq: 4, RosterBase: 3, Users: []presence.Entry{rosterEntry("bob", presence.Away, 1)}}, true, 4, 2},
		{"delta on an old base", one, 3, callsResp{RosterSeq: 3, RosterBase: 2}, false, 3, 1},
	} {
		users, have, ok := applyRoster(tc.users, tc.have, tc.cs)
		if ok != tc.wantOK || have != tc.wantHave || len(users) != tc.wantLen {
			t.Errorf("%s: ok %v have %d users %d, want %v %d %d", tc.name, ok, have, len(users), tc.wantOK, tc.wantHave, tc.wantLen)
		}
	}
	if len(one) != 1 {
		t.Error("a delta changed the record's old map in place")
	}
}

// BenchmarkRosterPush1000Users measures what one push of a node's roster
// costs on the wire with 1,000 users: the whole roster (first push, or
// to a member out of step) and a delta with one user ringing (every
// other push), as JSON bytes per push.
func BenchmarkRosterPush1000Users(b *testing.B) {
	roster := make([]presence.Entry, 1000)
	for i := range roster {
		roster[i] = rosterEntry(fmt.Sprintf("user%04d", i), presence.Available, 1)
	}
	var s rosterSender
	s.needFull = map[string]bool{}
	first := s.next(roster)
	fullBytes := len(marshal(callsResp{Addr: "127.0.0.1:7000", Node: "n1", Users: first.full, RosterFull: true, RosterSeq: first.seq}))
	ring := presence.Dialog{ID: "3c2a1b@127.0.0.1", CallID: "3c2a1b@127.0.0.1", Direction: presence.Recipient, State: presence.DialogEarly,
		Local: "sip:user0007@127.0.0.1:5062", Remote: "sip:switchboard@127.0.0.1"}
	changed := make([]presence.Entry, len(roster))
	copy(changed, roster)
	changed[7] = rosterEntry("user0007", presence.Ringing, 1, ring)
	var deltaBytes int
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		cur := roster
		if i%2 == 0 {
			cur = changed
		}
		p := s.next(cur)
		deltaBytes = len(marshal(callsResp{Addr: "127.0.0.1:7000", Node: "n1", Users: p.delta, RosterSeq: p.seq, RosterBase: p.base}))
	}
	b.ReportMetric(float64(fullBytes), "full-bytes")
	b.ReportMetric(float64(deltaBytes), "delta-bytes")
}

// What a node sends is always what the others accept: boundEntries cuts
// long notes, leaves out overlong identities, bad dialogs and names, and
// keeps at most maxUserDialogs dialogs, the confirmed first.
func TestBoundEntries(t *testing.T) {
	long := strings.Repeat("é", maxURILen) // 2 bytes a rune
	d := func(id string, st presence.DialogState) presence.Dialog {
		return presence.Dialog{ID: id, CallID: id, Direction: presence.Recipient, State: st, Remote: "sip:bob@x"}
	}
	many := make([]presence.Dialog, 0, maxUserDialogs+6)
	for i := range maxUserDialogs + 5 {
		many = append(many, d(fmt.Sprintf("e%03d", i), presence.DialogEarly))
	}
	many = append(many, d("zz-confirmed", presence.DialogConfirmed))
	longRemote := d("c", presence.DialogEarly)
	longRemote.Remote = "sip:" + strings.Repeat("a", maxURILen) + "@x"
	for _, tc := range []struct {
		name    string
		in      presence.Entry
		keep    bool
		dialogs int
		changed int
		check   func(presence.Entry) string
	}{
		{"fine as it is", rosterEntry("alice", presence.OnCall, 1, d("c", presence.DialogConfirmed)), true, 1, 0, nil},
		{"a long note", presence.Entry{Presence: presence.Presence{User: "alice", Note: long}}, true, 0, 1, func(e presence.Entry) string {
			if len(e.Note) > maxURILen || !utf8.ValidString(e.Note) || len(e.Note) < maxURILen-1 {
				return fmt.Sprintf("note of %d bytes, valid %v", len(e.Note), utf8.ValidString(e.Note))
			}
			return ""
		}},
		{"a long caller URI", rosterEntry("alice", presence.Ringing, 1, longRemote), true, 1, 1, func(e presence.Entry) string {
			if e.Dialogs[0].Remote != "" {
				return "the long remote identity was kept"
			}
			return ""
		}},
		{"a dialog without an ID, one terminated, one with a huge tag", rosterEntry("alice", presence.Ringing, 1,
			d("", presence.DialogEarly), d("t", presence.DialogTerminated), presence.Dialog{ID: "x", LocalTag: strings.Repeat("t", maxIDLen+1)}, d("ok", presence.DialogEarly)),
			true, 1, 3, nil},
		{"too many dialogs: the confirmed one stays", rosterEntry("alice", presence.OnCall, 1, many...), true, maxUserDialogs, 6, func(e presence.Entry) string {
			if !slices.ContainsFunc(e.Dialogs, func(x presence.Dialog) bool { return x.State == presence.DialogConfirmed }) {
				return "the confirmed dialog was cut"
			}
			if !slices.IsSortedFunc(e.Dialogs, func(a, b presence.Dialog) int { return strings.Compare(a.ID, b.ID) }) {
				return "dialogs not in ID order"
			}
			return ""
		}},
		{"a name too long", rosterEntry(strings.Repeat("u", maxIDLen+1), presence.Available, 1), false, 0, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed := boundEntries([]presence.Entry{tc.in})
			if err := checkEntries(out); err != nil {
				t.Fatalf("the bounded roster is refused: %v", err)
			}
			if changed != tc.changed {
				t.Errorf("%d changes, want %d", changed, tc.changed)
			}
			if (len(out) == 1) != tc.keep {
				t.Fatalf("kept %d entries, want the user kept: %v", len(out), tc.keep)
			}
			if !tc.keep {
				return
			}
			if len(out[0].Dialogs) != tc.dialogs {
				t.Errorf("%d dialogs, want %d", len(out[0].Dialogs), tc.dialogs)
			}
			if tc.check != nil {
				if msg := tc.check(out[0]); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}
