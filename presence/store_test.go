package presence

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestStatusDerivation(t *testing.T) {
	type step struct {
		do   func(s *Store)
		want Status
	}
	online := func(n int) func(*Store) { return func(s *Store) { s.SetOnline("alice", "sip", n) } }
	set := func(st Status, note string) func(*Store) {
		return func(s *Store) {
			if err := s.Set("alice", st, note); err != nil {
				t.Fatal(err)
			}
		}
	}
	dialog := func(id string, dir Direction, st DialogState) func(*Store) {
		return func(s *Store) { s.UpdateDialog("alice", Dialog{ID: id, CallID: id, Direction: dir, State: st}) }
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"register then unregister", []step{{online(1), Available}, {online(2), Available}, {online(0), Offline}}},
		{"away survives going offline", []step{{set(Away, "lunch"), Offline}, {online(1), Away}, {online(0), Offline}, {online(1), Away}, {set(Available, ""), Available}}},
		{"incoming call rings then connects then ends", []step{
			{online(1), Available}, {dialog("c1", Recipient, DialogTrying), Ringing}, {dialog("c1", Recipient, DialogEarly), Ringing},
			{dialog("c1", Recipient, DialogConfirmed), OnCall}, {dialog("c1", Recipient, DialogTerminated), Available}}},
		{"call ends back to away", []step{
			{online(1), Available}, {set(Away, ""), Away}, {dialog("c1", Recipient, DialogConfirmed), OnCall}, {dialog("c1", Recipient, DialogTerminated), Away}}},
		{"placing a call is busy", []step{{online(1), Available}, {dialog("c1", Initiator, DialogTrying), OnCall}, {dialog("c1", Initiator, DialogTerminated), Available}}},
		{"forked ring: one answers, the other stops", []step{
			{online(2), Available}, {dialog("a", Recipient, DialogEarly), Ringing}, {dialog("b", Recipient, DialogEarly), Ringing},
			{dialog("a", Recipient, DialogConfirmed), OnCall}, {dialog("b", Recipient, DialogTerminated), OnCall}, {dialog("a", Recipient, DialogTerminated), Available}}},
		{"appear offline", []step{{online(1), Available}, {set(Offline, ""), Offline}, {dialog("c", Recipient, DialogConfirmed), OnCall}, {dialog("c", Recipient, DialogTerminated), Offline}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			for i, st := range tc.steps {
				st.do(s)
				if p, _ := s.Get("alice"); p.Status != st.want {
					t.Fatalf("step %d: status %s, want %s", i, p.Status, st.want)
				}
			}
		})
	}
}

func TestSetRejectsCallStatuses(t *testing.T) {
	s := New(Options{})
	for _, st := range []Status{Ringing, OnCall} {
		if err := s.Set("alice", st, ""); err == nil {
			t.Errorf("Set(%s) succeeded", st)
		}
	}
}

func TestChangesInOrderAndHook(t *testing.T) {
	var hooked []Change
	s := New(Options{OnChange: func(c Change) {
		hooked = append(hooked, c)
		s := c.Presence // the hook may read the store
		_ = s
	}})
	s.Add("alice", "bob")
	sub := s.Subscribe(context.Background(), SubscribeOptions{})
	s.SetOnline("alice", "sip", 1)
	s.SetOnline("alice", "sip", 1) // no change: nothing published
	_ = s.Set("alice", Available, "in the office")
	s.UpdateDialog("alice", Dialog{ID: "x", Direction: Recipient, State: DialogEarly})
	want := []struct {
		st   Status
		note string
		dlg  bool
	}{{Available, "", false}, {Available, "in the office", false}, {Ringing, "in the office", true}}
	for i, w := range want {
		c := <-sub.C
		if c.Seq != uint64(i+1) || c.Presence.Status != w.st || c.Presence.Note != w.note || (c.Dialog != nil) != w.dlg {
			t.Fatalf("change %d = %+v, want %+v", i, c, w)
		}
	}
	if len(hooked) != 3 || hooked[2].Previous != Available {
		t.Fatalf("hook saw %d changes: %+v", len(hooked), hooked)
	}
	r := s.Roster()
	if len(r) != 2 || r[0].User != "alice" || r[1].User != "bob" || r[1].Status != Offline {
		t.Fatalf("roster %+v", r)
	}
	sub.Close()
	if _, ok := <-sub.C; ok || !errors.Is(sub.Err(), context.Canceled) {
		t.Fatalf("closed subscription: err %v", sub.Err())
	}
}

func TestPanickingHookIsRecovered(t *testing.T) {
	s := New(Options{OnChange: func(Change) { panic("boom") }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.SetOnline("alice", "sip", 1) // must not panic
	if p, _ := s.Get("alice"); p.Status != Available {
		t.Fatalf("status %s after a panicking hook", p.Status)
	}
	s.SetOnline("alice", "sip", 0) // and the store still works
	if p, _ := s.Get("alice"); p.Status != Offline {
		t.Fatalf("status %s", p.Status)
	}
}

func TestSlowSubscriberOverflowsWithoutBlocking(t *testing.T) {
	s := New(Options{})
	sub := s.Subscribe(context.Background(), SubscribeOptions{Buffer: 2})
	for i := range 10 { // never read: the producer must not block
		s.SetOnline("alice", "sip", i%2)
	}
	n := 0
	for range sub.C {
		n++
	}
	if n != 2 || !errors.Is(sub.Err(), ErrOverflow) {
		t.Fatalf("got %d changes, err %v; want 2 and ErrOverflow", n, sub.Err())
	}
}

func TestSubscriptionEndsWithContext(t *testing.T) {
	s := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	sub := s.Subscribe(ctx, SubscribeOptions{})
	cancel()
	if _, ok := <-sub.C; ok {
		t.Fatal("channel still open after cancel")
	}
	if !errors.Is(sub.Err(), context.Canceled) {
		t.Fatalf("err %v", sub.Err())
	}
	s.SetOnline("alice", "sip", 1) // no panic on a closed subscription
}

func TestStatusJSON(t *testing.T) {
	for st := Offline; st <= Away; st++ {
		b, err := json.Marshal(Presence{User: "u", Status: st})
		if err != nil {
			t.Fatal(err)
		}
		var p Presence
		if err := json.Unmarshal(b, &p); err != nil || p.Status != st {
			t.Fatalf("%s: round trip %s → %v %v", st, b, p.Status, err)
		}
	}
	b, _ := json.Marshal(OnCall)
	if string(b) != `"on-call"` {
		t.Fatalf("on-call marshals as %s", b)
	}
	if _, err := ParseStatus("sleeping"); err == nil {
		t.Fatal("ParseStatus accepted an unknown status")
	}
}

// BenchmarkUpdateDialog is the cost a call's signaling pays per dialog
// state: derive the status, publish to two subscribers and the hook.
func BenchmarkUpdateDialog(b *testing.B) {
	s := New(Options{OnChange: func(Change) {}})
	s.SetOnline("alice", "sip", 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		sub := s.Subscribe(ctx, SubscribeOptions{Buffer: 1024})
		go func() {
			for range sub.C {
			}
		}()
	}
	states := []DialogState{DialogTrying, DialogEarly, DialogConfirmed, DialogTerminated}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.UpdateDialog("alice", Dialog{ID: "c", CallID: "c", Direction: Recipient, State: states[i%4]})
	}
}

// Remote views (SetRemote) merge into what Get, Roster and the change
// feed show, never into LocalRoster; withdrawing a source takes its
// contribution away.
func TestSetRemoteMergesWithoutCountingAsLocal(t *testing.T) {
	type step struct {
		name       string
		do         func(s *Store)
		want       Status
		wantOnline int
		wantLocal  string // alice's LocalRoster status, "" when absent
	}
	remote := func(src string, st Status, online int) func(*Store) {
		return func(s *Store) { s.SetRemote(src, []Presence{{User: "alice", Status: st, Online: online}}) }
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"registered elsewhere, called elsewhere", []step{
			{"nothing yet", func(s *Store) { s.SetRemote("n1", []Presence{}) }, Offline, 0, ""},
			{"registered on n1", remote("n1", Available, 1), Available, 1, ""},
			{"on a call on n3", remote("n3", OnCall, 0), OnCall, 1, ""},
			{"call ends on n3", remote("n3", Offline, 0), Available, 1, ""},
			{"n1 leaves", func(s *Store) { s.SetRemote("n1", nil) }, Offline, 0, ""},
		}},
		{"local registration and remote call", []step{
			{"registered here", func(s *Store) { s.SetOnline("alice", "sip", 1) }, Available, 1, "available"},
			{"ringing on n2", remote("n2", Ringing, 0), Ringing, 1, "available"},
			{"away elsewhere loses to ringing", remote("n4", Away, 1), Ringing, 2, "available"},
			{"n2 and n4 gone", func(s *Store) { s.SetRemote("n2", nil); s.SetRemote("n4", nil) }, Available, 1, "available"},
		}},
		{"local call beats remote away", []step{
			{"away on n1", remote("n1", Away, 1), Away, 1, ""},
			{"a local dialog", func(s *Store) {
				s.UpdateDialog("alice", Dialog{ID: "c", CallID: "c", Direction: Recipient, State: DialogConfirmed})
			}, OnCall, 1, "on-call"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var changes []Change
			s := New(Options{OnChange: func(c Change) { changes = append(changes, c) }})
			for _, st := range tc.steps {
				before := len(changes)
				prev, _ := s.Get("alice")
				st.do(s)
				p, _ := s.Get("alice")
				if p.Status != st.want || p.Online != st.wantOnline {
					t.Fatalf("%s: alice %s online %d, want %s online %d", st.name, p.Status, p.Online, st.want, st.wantOnline)
				}
				if p.Status != prev.Status && (len(changes) == before || changes[len(changes)-1].Presence.Status != st.want) {
					t.Errorf("%s: no change published showing %s (%+v)", st.name, st.want, changes[before:])
				}
				local := ""
				for _, lp := range s.LocalRoster() {
					if lp.User == "alice" {
						local = lp.Status.String()
					}
				}
				if local != st.wantLocal {
					t.Errorf("%s: LocalRoster shows alice %q, want %q", st.name, local, st.wantLocal)
				}
				roster := s.Roster()
				if p.Status != Offline && (len(roster) != 1 || roster[0] != p) {
					t.Errorf("%s: Roster %+v, want [%+v]", st.name, roster, p)
				}
			}
		})
	}
}

// Setting the same remote view twice publishes nothing the second time.
func TestSetRemoteUnchangedIsQuiet(t *testing.T) {
	n := 0
	s := New(Options{OnChange: func(Change) { n++ }})
	view := []Presence{{User: "alice", Status: Available, Online: 1}, {User: "bob", Status: OnCall}}
	s.SetRemote("n1", view)
	if n != 2 {
		t.Fatalf("first view published %d changes, want 2", n)
	}
	s.SetRemote("n1", view)
	if n != 2 {
		t.Errorf("the same view again published %d more changes", n-2)
	}
}

// Another store's dialogs of a user (SetRemoteEntries) go through the
// change feed as local ones do: each one that appears or changes state is
// a change carrying it, each one that is gone is a change carrying it
// terminated; Snapshot lists them with the user's own; LocalEntries
// never does.
func TestSetRemoteEntriesDialogs(t *testing.T) {
	dlg := func(id string, st DialogState) Dialog {
		return Dialog{ID: id, CallID: id, Direction: Recipient, State: st, Remote: "sip:caller@x"}
	}
	entry := func(st Status, ds ...Dialog) []Entry {
		return []Entry{{Presence: Presence{User: "alice", Status: st}, Dialogs: ds}}
	}
	type step struct {
		name    string
		source  string
		entries []Entry
		// want: the dialog changes published, as "id:state"; then the
		// user's dialogs after (Snapshot), as "id:state".
		want, after []string
		status      Status
	}
	tests := []struct {
		name  string
		local bool // alice has a local dialog "L" (early) first
		steps []step
	}{
		{"rings, answers, ends on n3", false, []step{
			{"trying", "n3", entry(Ringing, dlg("c1", DialogTrying)), []string{"c1:trying"}, []string{"c1:trying"}, Ringing},
			{"the same again", "n3", entry(Ringing, dlg("c1", DialogTrying)), nil, []string{"c1:trying"}, Ringing},
			{"early", "n3", entry(Ringing, dlg("c1", DialogEarly)), []string{"c1:early"}, []string{"c1:early"}, Ringing},
			{"confirmed", "n3", entry(OnCall, dlg("c1", DialogConfirmed)), []string{"c1:confirmed"}, []string{"c1:confirmed"}, OnCall},
			{"gone", "n3", entry(Offline), []string{"c1:terminated"}, nil, Offline},
		}},
		{"two nodes, one leaves", false, []step{
			{"n2 rings", "n2", entry(Ringing, dlg("a", DialogEarly)), []string{"a:early"}, []string{"a:early"}, Ringing},
			{"n3 rings too", "n3", entry(Ringing, dlg("b", DialogEarly)), []string{"b:early"}, []string{"a:early", "b:early"}, Ringing},
			{"n2 answers", "n2", entry(OnCall, dlg("a", DialogConfirmed)), []string{"a:confirmed"}, []string{"a:confirmed", "b:early"}, OnCall},
			{"n3 leaves", "n3", nil, []string{"b:terminated"}, []string{"a:confirmed"}, OnCall},
		}},
		{"several at once, a terminated one ignored", false, []step{
			{"two", "n1", entry(OnCall, dlg("y", DialogConfirmed), dlg("x", DialogEarly), dlg("z", DialogTerminated), dlg("", DialogEarly)),
				[]string{"x:early", "y:confirmed"}, []string{"x:early", "y:confirmed"}, OnCall},
			{"one ends, one changes", "n1", entry(OnCall, dlg("x", DialogConfirmed)), []string{"y:terminated", "x:confirmed"}, []string{"x:confirmed"}, OnCall},
		}},
		{"a local dialog of the same ID wins", true, []step{
			{"remote L", "n1", entry(OnCall, dlg("L", DialogConfirmed), dlg("r", DialogEarly)), []string{"r:early"}, []string{"L:early", "r:early"}, OnCall},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{})
			if tc.local {
				s.UpdateDialog("alice", dlg("L", DialogEarly))
			}
			sub := s.Subscribe(context.Background(), SubscribeOptions{Buffer: 64})
			defer sub.Close()
			for _, st := range tc.steps {
				s.SetRemoteEntries(st.source, st.entries)
				var got []string
			drain:
				for {
					select {
					case c := <-sub.C:
						if c.Dialog != nil {
							got = append(got, c.Dialog.ID+":"+c.Dialog.State.String())
						}
					default:
						break drain
					}
				}
				if strings.Join(got, " ") != strings.Join(st.want, " ") {
					t.Errorf("%s: dialog changes %v, want %v", st.name, got, st.want)
				}
				p, ds, _ := s.Snapshot("alice")
				var after []string
				for _, d := range ds {
					after = append(after, d.ID+":"+d.State.String())
				}
				if strings.Join(after, " ") != strings.Join(st.after, " ") {
					t.Errorf("%s: dialogs %v, want %v", st.name, after, st.after)
				}
				if p.Status != st.status {
					t.Errorf("%s: status %s, want %s", st.name, p.Status, st.status)
				}
				for _, e := range s.LocalEntries() {
					for _, d := range e.Dialogs {
						if d.ID != "L" {
							t.Errorf("%s: LocalEntries lists another store's dialog %+v", st.name, d)
						}
					}
				}
			}
		})
	}
}

// Dialog states and directions read back what they write (the roster's
// JSON), and garbage is refused.
func TestDialogJSONRoundTrip(t *testing.T) {
	for _, d := range []Dialog{
		{ID: "a", CallID: "a", Direction: Recipient, State: DialogEarly, Local: "sip:alice@x", Remote: "sip:bob@y", LocalTag: "1", RemoteTag: "2"},
		{ID: "b", Direction: Initiator, State: DialogConfirmed},
		{ID: "c", Direction: Recipient, State: DialogTrying},
		{ID: "d", Direction: Recipient, State: DialogProceeding},
	} {
		b, err := json.Marshal(Entry{Presence: Presence{User: "alice", Status: OnCall}, Dialogs: []Dialog{d}})
		if err != nil {
			t.Fatal(err)
		}
		var e Entry
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if len(e.Dialogs) != 1 || e.Dialogs[0] != d || e.User != "alice" || e.Status != OnCall {
			t.Errorf("%s read back as %+v", b, e)
		}
	}
	for _, bad := range []string{`{"state":"ringing"}`, `{"direction":"sideways"}`, `{"state":3}`} {
		var d Dialog
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s accepted as %+v", bad, d)
		}
	}
}
