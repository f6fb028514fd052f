package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/testharness"
)

// feedEvent is an `event` message's event as the tests read it.
type feedEvent struct {
	Seq   uint64          `json:"seq"`
	Type  string          `json:"type"`
	LegID string          `json:"leg_id"`
	Data  json.RawMessage `json:"data"`
}

func eventOf(t *testing.T, m bridge.Message) feedEvent {
	t.Helper()
	var ev feedEvent
	if err := json.Unmarshal(m.Event, &ev); err != nil {
		t.Fatalf("event message %+v: %v", m, err)
	}
	if ev.Seq != m.Seq {
		t.Fatalf("event message seq %d, its event's %d", m.Seq, ev.Seq)
	}
	return ev
}

// describe lists feed messages compactly for failure output.
func describe(feed []bridge.Message) string {
	var b strings.Builder
	for _, m := range feed {
		var ev feedEvent
		_ = json.Unmarshal(m.Event, &ev)
		fmt.Fprintf(&b, "\n  %s session=%s seq=%d %s %s %s", m.Type, m.Session, m.Seq, ev.Type, ev.LegID, ev.Data)
	}
	return b.String()
}

// has reports whether the feed holds an event of session with that type
// and leg (and text in its data, if given).
func has(feed []bridge.Message, session, typ, leg, text string) bool {
	for _, m := range feed {
		var ev feedEvent
		if m.Type != "event" || m.Session != session || json.Unmarshal(m.Event, &ev) != nil {
			continue
		}
		if ev.Type == typ && (leg == "" || ev.LegID == leg) && strings.Contains(string(ev.Data), text) {
			return true
		}
	}
	return false
}

// startBrowserTestServer runs a server with browsers on loopback whose
// "park" route answers and holds the caller until the call ends.
func startBrowserTestServer(t *testing.T) *Server {
	t.Helper()
	r := NewRouter()
	r.HandleFunc("park", func(ctx context.Context, c *Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	return startTestServer(t, Config{HTTPAddr: "127.0.0.1:0",
		Browsers: &BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"}}, r)
}

func newBrowser(t *testing.T, ctx context.Context, srv *Server, tok string) *testharness.Browser {
	t.Helper()
	b, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), tok)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// parkedBrowser logs user in, calls park and waits for the call to be
// answered (its leg.answered event): the browser, its call, its ID.
func parkedBrowser(t *testing.T, ctx context.Context, srv *Server, user string) (*testharness.Browser, *testharness.PhoneCall, string) {
	t.Helper()
	b := newBrowser(t, ctx, srv, srv.Tokens().MintFor(user, time.Hour))
	pc, err := b.Call(ctx, "park")
	if err != nil {
		t.Fatalf("%s calls park: %v", user, err)
	}
	id := testharness.CallID(pc)
	if _, err := b.WaitFeed(ctx, user+"'s leg.answered", func(f []bridge.Message) bool { return has(f, id, "leg.answered", id, "") }); err != nil {
		t.Fatal(err)
	}
	return b, pc, id
}

// checkRun checks that the feed's events of session, from the first one
// on, are the session's own stream from that Seq: consecutive, none
// twice, none missing, and the same events as the session's log (read
// through own, opened from 0 while the session was live).
func checkRun(t *testing.T, own SessionFeed, feed []bridge.Message, session string) []feedEvent {
	t.Helper()
	var got []feedEvent
	for _, m := range feed {
		if m.Type == "event" && m.Session == session {
			got = append(got, eventOf(t, m))
		}
	}
	if len(got) == 0 {
		t.Fatalf("no events of %s in the feed:%s", session, describe(feed))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, g := range got {
		want, err := own.Next(ctx)
		for err == nil && want.Seq < g.Seq && i == 0 {
			want, err = own.Next(ctx)
		}
		if err != nil {
			t.Fatalf("%s's own stream after %d events: %v", session, i, err)
		}
		if g.Seq != want.Seq || g.Type != want.Type.String() || g.LegID != want.LegID {
			t.Fatalf("%s: the feed's event %d is %d %s %s, the session's %d %s %s:%s", session, i, g.Seq, g.Type, g.LegID,
				want.Seq, want.Type, want.LegID, describe(feed))
		}
	}
	return got
}

// A browser's leg is moved from the call it placed into a room: the
// browser gets its own leg.moved (the last event of that call it sees),
// a `moved` message naming room:sales, then the room's events from its
// arrival (leg.joined, whose from_seq names that leg.moved) on, gap-free,
// including what another member (a second browser moved in) says in the
// room's chat. It gets none of the first call's events after the move.
func TestBrowserFeedFollowsLegIntoRoom(t *testing.T) {
	srv := startBrowserTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, _, a := parkedBrowser(t, ctx, srv, "alice")
	bob, bpc, b := parkedBrowser(t, ctx, srv, "bob")
	ownA, err := srv.OpenSession(ctx, a, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ownA.Close()
	if err := srv.Call(a).Signal(ctx, "before", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitFeed(ctx, "the signal before the move", func(f []bridge.Message) bool { return has(f, a, "signal", "", "before") }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Move(ctx, a, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Move(ctx, b, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitFeed(ctx, "bob in the room", func(f []bridge.Message) bool { return has(f, "room:sales", "leg.joined", b, "") }); err != nil {
		t.Fatal(err)
	}
	if err := bob.Send(bpc, bridge.Message{Type: "chat", Text: "hello room"}); err != nil {
		t.Fatal(err)
	}
	feed, err := alice.WaitFeed(ctx, "bob's chat in the room", func(f []bridge.Message) bool {
		return has(f, "room:sales", "chat", b, "hello room")
	})
	if err != nil {
		t.Fatalf("%v:%s", err, describe(feed))
	}
	// Around the switch: leg.moved (call a), moved, leg.joined (room).
	mi := -1
	for i, m := range feed {
		if m.Type == "moved" {
			if mi >= 0 {
				t.Fatalf("two moved messages:%s", describe(feed))
			}
			mi = i
		}
	}
	if mi < 1 || mi+1 >= len(feed) {
		t.Fatalf("no moved message between events:%s", describe(feed))
	}
	mv, before, after := feed[mi], eventOf(t, feed[mi-1]), eventOf(t, feed[mi+1])
	if mv.Call != a || mv.Session != "room:sales" || mv.Leg != a {
		t.Fatalf("moved message %+v, want call and leg %s, session room:sales", mv, a)
	}
	if feed[mi-1].Session != a || before.Type != "leg.moved" || before.LegID != a {
		t.Fatalf("the event before moved is %s %+v, want call %s's leg.moved", feed[mi-1].Session, before, a)
	}
	var joined MoveData
	_ = json.Unmarshal(after.Data, &joined)
	if feed[mi+1].Session != "room:sales" || after.Type != "leg.joined" || after.LegID != a || joined.From != "call:"+a || joined.FromSeq != before.Seq {
		t.Fatalf("the event after moved is %s %+v, want room:sales's leg.joined of %s from call:%s at %d", feed[mi+1].Session, after, a, a, before.Seq)
	}
	for _, m := range feed[mi+1:] {
		if m.Type != "event" || m.Session != "room:sales" || m.Call != a {
			t.Fatalf("after the move, a message that is not the room's event for call %s: %+v:%s", a, m, describe(feed))
		}
	}
	checkRun(t, ownA, feed[:mi], a)
	ownRoom, err := srv.OpenSession(ctx, "room:sales", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ownRoom.Close()
	room := checkRun(t, ownRoom, feed[mi+1:], "room:sales")
	if !has(feed, "room:sales", "leg.joined", b, "") {
		t.Fatalf("alice did not see bob join:%s", describe(feed))
	}
	t.Logf("alice's feed: %d events of call %s, moved, %d of room:sales", mi, a, len(room))
}

// watch asks b to watch session and returns the reply's type and code.
func watchReply(t *testing.T, ctx context.Context, b *testharness.Browser, session string, seq uint64) (string, int) {
	t.Helper()
	r, err := b.Watch(ctx, session, seq)
	if err != nil {
		t.Fatalf("watch %s: %v", session, err)
	}
	return r.Type, r.Code
}

// A browser watches sessions its token's sessions claim allows (globs,
// a room with or without "room:"): it gets `watching` and their events,
// each carrying the session; one the token does not allow gets 403, one
// that is not live 404, the 17th watch on a socket 429; unwatch stops
// the events. Malformed watches (wrong JSON types, huge or control-
// character session names) get an error and the socket stays up.
func TestBrowserWatchSessions(t *testing.T) {
	srv := startBrowserTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, a := parkedBrowser(t, ctx, srv, "alice")
	if err := srv.Move(ctx, a, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	_, _, c := parkedBrowser(t, ctx, srv, "carol")
	exp := time.Now().Add(time.Hour).Unix()
	viewer := newBrowser(t, ctx, srv, srv.Tokens().Mint(bridge.Claims{User: "viewer", Expires: exp, Sessions: []string{"sales", "wr-*"}}))
	nobody := newBrowser(t, ctx, srv, srv.Tokens().Mint(bridge.Claims{User: "nobody", Expires: exp, Routes: []string{"*"}}))
	all := newBrowser(t, ctx, srv, srv.Tokens().MintFor("all", time.Hour))

	for _, tc := range []struct {
		b       *testharness.Browser
		session string
		typ     string
		code    int
	}{
		{viewer, "room:sales", "watching", 0},
		{viewer, c, "watching", 0},
		{viewer, "room:support", "error", 403},
		{nobody, "room:sales", "error", 403},
		{nobody, c, "error", 403},
		{all, "room:nope", "error", 404},
		{all, "wr-0000", "error", 404},
		{all, "", "error", 400},
		{all, strings.Repeat("x", 300), "error", 400},
		{all, "room:a\nb", "error", 400},
	} {
		if typ, code := watchReply(t, ctx, tc.b, tc.session, 0); typ != tc.typ || code != tc.code {
			t.Errorf("watch %.40q: %s %d, want %s %d", tc.session, typ, code, tc.typ, tc.code)
		}
	}
	// The watched room's events from the start (seq 0), then new ones.
	if err := srv.Call(c).Signal(ctx, "for-watchers", nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Move(ctx, c, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	feed, err := viewer.WaitFeed(ctx, "the room's and the call's events", func(f []bridge.Message) bool {
		return has(f, "room:sales", "leg.joined", a, "") && has(f, "room:sales", "leg.joined", c, "") &&
			has(f, c, "signal", "", "for-watchers") && has(f, c, "leg.moved", c, "room:sales")
	})
	if err != nil {
		t.Fatalf("%v:%s", err, describe(feed))
	}
	for _, m := range feed {
		if m.Call != "" {
			t.Fatalf("a watched event carries a call: %+v", m)
		}
	}
	ownRoom, err := srv.OpenSession(ctx, "room:sales", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ownRoom.Close()
	checkRun(t, ownRoom, feed, "room:sales")
	// The call ends (its caller moved out): its watch says so.
	if _, err := viewer.WaitFeed(ctx, "the call's watch to end", func(f []bridge.Message) bool {
		for _, m := range f {
			if m.Type == "unwatched" && m.Session == c && m.Cause == "session ended" {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	// Watching from a seq gives the events after it only.
	if typ, _ := watchReply(t, ctx, all, "room:sales", 1); typ != "watching" {
		t.Fatalf("watch from seq 1: %s", typ)
	}
	allFeed, err := all.WaitFeed(ctx, "room events after 1", func(f []bridge.Message) bool { return has(f, "room:sales", "leg.joined", c, "") })
	if err != nil {
		t.Fatal(err)
	}
	if first := allFeed[0]; first.Session != "room:sales" || first.Seq != 2 {
		t.Fatalf("watch after seq 1 starts with %+v, want seq 2", first)
	}
	// Unwatch: no more events of the room.
	if r, err := viewer.Unwatch(ctx, "room:sales"); err != nil || r.Type != "unwatched" {
		t.Fatalf("unwatch: %+v %v", r, err)
	}
	if r, err := viewer.Unwatch(ctx, "room:sales"); err != nil || r.Type != "error" || r.Code != 404 {
		t.Fatalf("unwatch again: %+v %v, want a 404", r, err)
	}
	n := len(viewer.Feed())
	if err := srv.Move(ctx, a, ToRoom("sales"), JoinOptions{Mode: ModeMonitor}); err != nil { // a mode change: leg.moved in the room
		t.Fatal(err)
	}
	if _, err := all.WaitFeed(ctx, "the mode change", func(f []bridge.Message) bool { return has(f, "room:sales", "leg.moved", a, "monitor") }); err != nil {
		t.Fatal(err)
	}
	if err := viewer.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := viewer.Feed()[n:]; len(got) != 0 {
		t.Fatalf("events after unwatch:%s", describe(got))
	}
	// Malformed watches: an error each, and the socket stays up.
	for _, raw := range []string{
		`{"type":"watch","session":5}`,
		`{"type":"watch","session":"room:sales","seq":"x"}`,
		`{"type":"watch","session":["room:sales"]}`,
		`{"type":"unwatch","session":{}}`,
		`{"type":"watch","session":"` + strings.Repeat("é", 20000) + `"}`,
		`{"type":"watch","id":"z","session":"room:\u0000"}`,
		`{"type":"resume","call":"nope","session":"room:sales","seq":-1}`,
	} {
		if err := all.SendRaw([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		if err := all.Ping(ctx); err != nil {
			t.Fatalf("after %.60s: the socket is down: %v", raw, err)
		}
	}
	// At most 16 watches a socket.
	for i := 0; i < bridge.MaxWatches-1; i++ { // all watches room:sales already
		if typ, code := watchReply(t, ctx, all, fmt.Sprintf("room:r%d", i), 0); typ != "error" || code != 404 {
			t.Fatalf("watch of a room not live: %s %d", typ, code)
		}
	}
	var ids []string
	for i := 0; i < bridge.MaxWatches; i++ { // calls held in memory (park)
		leg, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "park", From: fmt.Sprintf("sip:u%d@memory", i)})
		srv.StartCall(leg)
		t.Cleanup(func() { _ = leg.Hangup(context.Background()) })
		testharness.WaitUntil(t, 5*time.Second, "a parked call", leg.Answered)
		ids = append(ids, leg.ID())
	}
	for i, id := range ids[:bridge.MaxWatches-1] {
		if typ, code := watchReply(t, ctx, all, id, 0); typ != "watching" {
			t.Fatalf("watch %d: %s %d", i+2, typ, code)
		}
	}
	if typ, code := watchReply(t, ctx, all, ids[len(ids)-1], 0); typ != "error" || code != 429 {
		t.Fatalf("the 17th watch: %s %d, want a 429", typ, code)
	}
}

// A browser whose leg is in a room drops its socket; meanwhile another
// member chats in the room. A new socket resumes the call with the room
// (the session it last had events of) and its last Seq there: it gets
// exactly the room's events after that Seq. Then the leg moves to a
// second room and the socket drops again; resuming with the session
// left empty (the call the leg placed, which ended when its caller moved
// out) jumps straight to the leg's current room: `moved`, then that
// room's events from the leg's arrival.
func TestBrowserResumeAfterMove(t *testing.T) {
	srv := startBrowserTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, _, a := parkedBrowser(t, ctx, srv, "alice")
	bob, bpc, b := parkedBrowser(t, ctx, srv, "bob")
	if err := srv.Move(ctx, a, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Move(ctx, b, ToRoom("sales"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	feed, err := alice.WaitFeed(ctx, "bob joining", func(f []bridge.Message) bool { return has(f, "room:sales", "leg.joined", b, "") })
	if err != nil {
		t.Fatal(err)
	}
	k := feed[len(feed)-1].Seq
	alice.Drop()
	for _, text := range []string{"one", "two"} {
		if err := bob.Send(bpc, bridge.Message{Type: "chat", Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.WaitFeed(ctx, "bob's chat", func(f []bridge.Message) bool { return has(f, "room:sales", "chat", b, "two") }); err != nil {
		t.Fatal(err)
	}
	alice2 := newBrowser(t, ctx, srv, srv.Tokens().MintFor("alice", time.Hour))
	if r, err := alice2.Resume(ctx, a, "room:sales", k); err != nil || r.Type != "resumed" || r.Session != "room:sales" {
		t.Fatalf("resume: %+v %v", r, err)
	}
	feed2, err := alice2.WaitFeed(ctx, "the chat after the resume", func(f []bridge.Message) bool { return has(f, "room:sales", "chat", b, "two") })
	if err != nil {
		t.Fatal(err)
	}
	got := checkRunFrom(t, srv, feed2, "room:sales", k)
	if len(got) != 2 || !strings.Contains(string(got[0].Data), "one") {
		t.Fatalf("after the resume: %+v, want the two chats after %d", got, k)
	}
	// To a second room, then drop and resume with no session.
	if err := srv.Move(ctx, a, ToRoom("support"), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice2.WaitFeed(ctx, "the move to support", func(f []bridge.Message) bool { return has(f, "room:support", "leg.joined", a, "") }); err != nil {
		t.Fatal(err)
	}
	alice2.Drop()
	alice3 := newBrowser(t, ctx, srv, srv.Tokens().MintFor("alice", time.Hour))
	if r, err := alice3.Resume(ctx, a, "", 3); err != nil || r.Type != "resumed" {
		t.Fatalf("resume: %+v %v", r, err)
	}
	feed3, err := alice3.WaitFeed(ctx, "the second room", func(f []bridge.Message) bool { return has(f, "room:support", "leg.joined", a, "") })
	if err != nil {
		t.Fatal(err)
	}
	if m := feed3[0]; m.Type != "moved" || m.Session != "room:support" || m.Call != a {
		t.Fatalf("the first message after resuming an ended call: %+v, want moved to room:support:%s", m, describe(feed3))
	}
	if ev := eventOf(t, feed3[1]); ev.Type != "leg.joined" || ev.LegID != a || feed3[1].Session != "room:support" {
		t.Fatalf("then %+v, want the leg's arrival in room:support:%s", ev, describe(feed3))
	}
}

// checkRunFrom is checkRun with the session's log opened after Seq from.
func checkRunFrom(t *testing.T, srv *Server, feed []bridge.Message, session string, from uint64) []feedEvent {
	t.Helper()
	own, err := srv.OpenSession(context.Background(), session, from)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	got := checkRun(t, own, feed, session)
	if got[0].Seq != from+1 {
		t.Fatalf("%s's events start at %d, want %d:%s", session, got[0].Seq, from+1, describe(feed))
	}
	return got
}

// A browser's leg moved into another call (Move ToCall) is followed
// there the same way: leg.moved, `moved` naming the call's ID, then that
// call's events from the leg's arrival — and a signal of that call.
func TestBrowserFeedFollowsLegIntoCall(t *testing.T) {
	srv := startBrowserTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, _, a := parkedBrowser(t, ctx, srv, "alice")
	_, _, b := parkedBrowser(t, ctx, srv, "bob")
	if err := srv.Move(ctx, a, ToCall(b), JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Call(b).Signal(ctx, "in-bobs-call", nil); err != nil {
		t.Fatal(err)
	}
	feed, err := alice.WaitFeed(ctx, "bob's call's signal", func(f []bridge.Message) bool { return has(f, b, "signal", "", "in-bobs-call") })
	if err != nil {
		t.Fatalf("%v:%s", err, describe(feed))
	}
	var kinds []string
	for _, m := range feed {
		ev := feedEvent{}
		_ = json.Unmarshal(m.Event, &ev)
		kinds = append(kinds, m.Type+" "+m.Session+" "+ev.Type)
	}
	want := []string{
		"event " + a + " call.started", "event " + a + " leg.answered", "event " + a + " leg.moved",
		"moved " + b + " ", "event " + b + " leg.joined", "event " + b + " signal",
	}
	if strings.Join(kinds, "|") != strings.Join(want, "|") {
		t.Fatalf("alice's feed:\n got %q\nwant %q", kinds, want)
	}
}

// A browser that takes a call a flow dialled (its leg is not the call's
// first) gets that call's events too: its own answer and bridging, and a
// signal of the call.
func TestBrowserFeedOfADialledLeg(t *testing.T) {
	r := NewRouter()
	r.HandleFunc("ring-alice", func(ctx context.Context, c *Call) error {
		return c.Dial(ctx, "alice", DialOptions{Timeout: 10 * time.Second})
	})
	srv := startTestServer(t, Config{HTTPAddr: "127.0.0.1:0",
		Browsers: &BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"}}, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := newBrowser(t, ctx, srv, srv.Tokens().MintFor("alice", time.Hour))
	leg, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "ring-alice", From: "sip:carol@memory"})
	srv.StartCall(leg)
	defer func() { _ = leg.Hangup(context.Background()) }()
	var pc *testharness.PhoneCall
	select {
	case pc = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("alice's browser was not rung")
	}
	a := testharness.CallID(pc)
	call := leg.ID()
	if _, err := alice.WaitFeed(ctx, "the dialled leg bridged", func(f []bridge.Message) bool { return has(f, call, "leg.bridged", a, "") }); err != nil {
		t.Fatal(err)
	}
	if err := srv.Call(call).Signal(ctx, "to-the-dialled", nil); err != nil {
		t.Fatal(err)
	}
	feed, err := alice.WaitFeed(ctx, "the call's signal", func(f []bridge.Message) bool { return has(f, call, "signal", "", "to-the-dialled") })
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range feed {
		if m.Type != "event" || m.Call != a || m.Session != call {
			t.Fatalf("a message that is not an event of call %s for leg %s: %+v", call, a, m)
		}
	}
	own, err := srv.OpenSession(ctx, call, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got := checkRun(t, own, feed, call); got[0].Seq != 1 {
		t.Fatalf("the dialled leg's feed starts at Seq %d, want the call's first event", got[0].Seq)
	}
}
