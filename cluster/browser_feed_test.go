package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/testharness"
)

// wsEvent is the event of a browser's `event` message.
type wsEvent struct {
	Seq   uint64          `json:"seq"`
	Type  string          `json:"type"`
	LegID string          `json:"leg_id"`
	Data  json.RawMessage `json:"data"`
	Node  string          `json:"node"`
}

// sessionEvents are the events of session in a browser's feed (of its
// call when call is set, else of its watches), in the order they came.
func sessionEvents(t *testing.T, feed []bridge.Message, session, call string) []wsEvent {
	t.Helper()
	var out []wsEvent
	for _, m := range feed {
		if m.Type != "event" || m.Session != session || m.Call != call {
			continue
		}
		var ev wsEvent
		if err := json.Unmarshal(m.Event, &ev); err != nil || ev.Seq != m.Seq {
			t.Fatalf("event message %+v: %v", m, err)
		}
		out = append(out, ev)
	}
	return out
}

func countWS(evs []wsEvent, typ, text string) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ && strings.Contains(string(e.Data), text) {
			n++
		}
	}
	return n
}

// gapFree fails unless evs are consecutive Seqs.
func gapFree(t *testing.T, what string, evs []wsEvent) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Seq != evs[i-1].Seq+1 {
			t.Fatalf("%s: Seq %d after %d: %+v", what, evs[i].Seq, evs[i-1].Seq, evs)
		}
	}
}

// Browsers follow sessions across nodes (three processes, etcd): a
// browser logged in on a node that does not host room blue watches it
// and gets the host's events — the same Seqs, in order, from the host
// node — including a member's digits; then its own call on that node is
// moved into the room: it gets `moved` (room:blue, with the relay leg's
// ID), the room's events from the relay leg's arrival on, gap-free, and
// a member's digits pressed after the move; it hears the member too (the
// leg's media stays on its node, relayed to the room's host). Then the
// leg is moved into a call parked on the host (a new relay) and finally
// comes home to a room on its own node: the feed follows each move, with
// no event of a session after the leg left it.
func TestBrowserFollowsSessionsAcrossNodes(t *testing.T) {
	bin := switchboardBinary(t)
	ep := startEtcd(t)
	dir := t.TempDir()
	key := []byte("a token key shared by the cluster's nodes")
	if err := os.WriteFile(filepath.Join(dir, "token.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("wsfeed-%d", time.Now().UnixNano())
	var nodes []*nodeProc
	for i := range 3 {
		nodes = append(nodes, startNode(t, bin, nodeSpec{name: fmt.Sprintf("m%d", i+1), clusterName: name, provider: "etcd", etcd: ep,
			rtpMin: 50000 + 2000*i, extra: []string{"--webrtc-addr", "127.0.0.1:0", "--data-dir", dir}}))
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
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var host Member
	getJSON(t, "http://"+nodes[0].http+"/api/rooms/blue", &host)
	var h, a *nodeProc
	for _, n := range nodes {
		if n.name == host.Node {
			h = n
		} else if a == nil {
			a = n
		}
	}
	if h == nil || a == nil {
		t.Fatalf("room blue's host %+v is not one of the nodes", host)
	}
	t.Logf("room blue is hosted on %s; the browser is on %s", h.name, a.name)

	// A phone parked on the host, moved into the room there.
	phone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 47000, RTPPortMax: 47999, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	pc, err := phone.Call(ctx, "sip:park@"+h.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	// (The call is answered once the phone's ACK is in: until then 502.)
	waitFor(t, 10*time.Second, "the phone moved into room blue", func() bool {
		return httpPost(t, "http://"+h.http+"/api/calls/"+pc.Leg.ID()+"/move?room=blue") == http.StatusNoContent
	})

	tokens, err := bridge.NewTokens(key)
	if err != nil {
		t.Fatal(err)
	}
	br, err := testharness.NewBrowser(ctx, a.http, tokens.MintFor("alice", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if r, err := br.Watch(ctx, "room:blue", 0); err != nil || r.Type != "watching" {
		t.Fatalf("watch room:blue on %s: %+v %v", a.name, r, err)
	}
	if r, err := br.Watch(ctx, "room:nowhere", 0); err != nil || r.Type != "error" || r.Code != 404 {
		t.Fatalf("watch a room no node has: %+v %v, want a 404", r, err)
	}
	if _, err := br.WaitFeed(ctx, "the phone's arrival in the room", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, "room:blue", ""), "leg.joined", "") >= 1
	}); err != nil {
		t.Fatal(err)
	}
	if err := pc.SendDTMF("12"); err != nil {
		t.Fatal(err)
	}
	feed, err := br.WaitFeed(ctx, "the phone's digits", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, "room:blue", ""), "dtmf", "") >= 2
	})
	if err != nil {
		t.Fatal(err)
	}
	watched := sessionEvents(t, feed, "room:blue", "")
	if watched[0].Seq != 1 {
		t.Fatalf("the watch from 0 starts at Seq %d: %+v", watched[0].Seq, watched)
	}
	gapFree(t, "the watched room", watched)
	for _, e := range watched {
		if e.Node != h.name {
			t.Fatalf("an event of room blue not from its host %s: %+v", h.name, e)
		}
	}
	// The host's own stream (SSE on the host) has the same events.
	own := readSSE(t, "http://"+h.http+"/api/sessions/room:blue/events", 0, func(evs []sseEvent) bool { return len(evs) >= len(watched) })
	for i, e := range watched {
		if own[i].Event.Seq != e.Seq || own[i].Event.Type.String() != e.Type || own[i].Event.LegID != e.LegID {
			t.Fatalf("event %d: the browser's %+v, the host's %+v", i, e, own[i].Event)
		}
	}

	// The browser's own call on its node, moved into the room.
	bc, err := br.Call(ctx, "park")
	if err != nil {
		t.Fatal(err)
	}
	leg := testharness.CallID(bc)
	if _, err := br.WaitFeed(ctx, "the browser's call answered", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, leg, leg), "leg.answered", "") == 1
	}); err != nil {
		t.Fatal(err)
	}
	if code := httpPost(t, "http://"+a.http+"/api/calls/"+leg+"/move?room=blue"); code != http.StatusNoContent {
		t.Fatalf("moving the browser's leg into room blue: %d", code)
	}
	feed, err = br.WaitFeed(ctx, "moved", func(f []bridge.Message) bool {
		for _, m := range f {
			if m.Type == "moved" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	var mv bridge.Message
	for _, m := range feed {
		if m.Type == "moved" {
			mv = m
		}
	}
	if mv.Call != leg || mv.Session != "room:blue" || mv.Leg == "" || mv.Leg == leg {
		t.Fatalf("moved %+v, want call %s now in room:blue through a relay leg", mv, leg)
	}
	pc.Play(tone(1300))
	if _, err := bc.WaitTone(ctx, 1300, 40); err != nil {
		t.Fatalf("the browser in the room does not hear the phone: %v", err)
	}
	if err := pc.SendDTMF("3"); err != nil {
		t.Fatal(err)
	}
	feed, err = br.WaitFeed(ctx, "the digit after the move", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, "room:blue", leg), "dtmf", `"3"`) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	mine := sessionEvents(t, feed, "room:blue", leg)
	if first := mine[0]; first.Type != "leg.joined" || first.LegID != mv.Leg || first.Node != h.name {
		t.Fatalf("the call's first room event %+v, want the relay leg %s joining on %s", first, mv.Leg, h.name)
	}
	gapFree(t, "the call's room events", mine)
	if n := countWS(mine, "dtmf", ""); n != 1 {
		t.Fatalf("the call's room events have %d digits, want only the one pressed after the move: %+v", n, mine)
	}
	calls := sessionEvents(t, feed, leg, leg)
	if last := calls[len(calls)-1]; last.Type != "leg.moved" || last.LegID != leg {
		t.Fatalf("the call's last event before the move %+v, want its leg.moved", last)
	}

	// Into a call on the host (a second phone's, parked there): a new
	// relay, whose far leg is moved into that call; the feed leaves the
	// room when the browser's leg leaves the first relay.
	pc2, err := phone.Call(ctx, "sip:park@"+h.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc2.Hangup(context.Background()) }()
	parked := pc2.Leg.ID()
	waitFor(t, 10*time.Second, "the browser's leg moved into the parked call", func() bool {
		return httpPost(t, "http://"+a.http+"/api/calls/"+leg+"/move?call="+parked) == http.StatusNoContent
	})
	feed, err = br.WaitFeed(ctx, "the relay leg's arrival in the parked call", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, parked, leg), "leg.joined", "") == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	inCall := sessionEvents(t, feed, parked, leg)
	far := inCall[0].LegID
	if inCall[0].Type != "leg.joined" || far == mv.Leg || far == leg || inCall[0].Node != h.name {
		t.Fatalf("the parked call's first event %+v, want a new relay leg joining on %s", inCall[0], h.name)
	}
	if mine2 := sessionEvents(t, feed, "room:blue", leg); len(mine2) != len(mine) {
		t.Fatalf("room blue's events after the leg left it: %+v", mine2[len(mine):])
	}

	// Back to a room on the browser's own node: the feed sees the leg
	// leave the relay call and follows it to room green.
	green := roomOn(t, a, "green", a.name)
	if code := httpPost(t, "http://"+a.http+"/api/calls/"+leg+"/move?room="+green); code != http.StatusNoContent {
		t.Fatalf("moving the browser's leg into room green on %s: %d", a.name, code)
	}
	feed, err = br.WaitFeed(ctx, "the leg's arrival in room green", func(f []bridge.Message) bool {
		return countWS(sessionEvents(t, f, "room:"+green, leg), "leg.joined", "") == 1
	})
	if err != nil {
		for _, m := range feed[max(0, len(feed)-8):] {
			t.Logf("feed: %s call=%s session=%s seq=%d leg=%s %s", m.Type, m.Call, m.Session, m.Seq, m.Leg, m.Event)
		}
		t.Fatalf("%v (%d messages)", err, len(feed))
	}
	var moves []bridge.Message
	for _, m := range feed {
		if m.Type == "moved" {
			moves = append(moves, m)
		}
	}
	if len(moves) != 3 || moves[1].Session != parked || moves[1].Leg != far || moves[2].Session != "room:"+green || moves[2].Leg != leg {
		t.Fatalf("moved messages %+v, want then the parked call (its relay's far leg %s) and room %s (the leg's own ID)", moves, far, green)
	}
	greens := sessionEvents(t, feed, "room:"+green, leg)
	if greens[0].Type != "leg.joined" || greens[0].Node != "" || !strings.Contains(string(greens[0].Data), `"from":"call:`+far+`"`) {
		t.Fatalf("room %s's first event %+v (%s), want the leg's arrival from the relay call %s", green, greens[0], greens[0].Data, far)
	}
	if n := len(sessionEvents(t, feed, "room:blue", leg)); n != len(mine) {
		t.Fatalf("room blue events after the leg left it: %d, had %d", n, len(mine))
	}
	inCall = sessionEvents(t, feed, parked, leg)
	if n := countWS(inCall, "leg.ended", "") + countWS(inCall, "leg.left", ""); n != 0 {
		t.Fatalf("the parked call's events show the relay ending before the leg's departure from the relay: %+v", inCall)
	}
}
