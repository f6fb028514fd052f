package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// sseEvent is one Server-Sent Event of /api/sessions/{id}/events.
type sseEvent struct {
	ID    uint64
	Event Event
}

// readSSE reads url's event stream (resuming after lastID when > 0) until
// stop says so, the stream ends, or 20 s pass.
func readSSE(t *testing.T, url string, lastID uint64, stop func([]sseEvent) bool) []sseEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for !stop(out) && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.ID, _ = strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.Event); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		case line == "":
			out = append(out, cur)
			cur = sseEvent{}
		}
	}
	return out
}

func countType(evs []sseEvent, typ string) int {
	n := 0
	for _, e := range evs {
		if e.Event.Type.String() == typ {
			n++
		}
	}
	return n
}

// A call's and a room's event streams read on any node are the owner's:
// the same events with the same Seq, in the same order; resuming from a
// Seq on another node gives exactly the events after it; the stream of a
// call that ends ends (call.ended, then EOF) on every node.
func TestSessionEventsSameFromEveryNode(t *testing.T) {
	nodes := startThree(t, "events")
	m1 := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	pc, err := phone.Call(ctx, "sip:park@"+m1.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	if err := pc.SendDTMF("1234"); err != nil {
		t.Fatal(err)
	}
	path := "/api/sessions/" + pc.Leg.ID() + "/events"
	owner := readSSE(t, "http://"+m1.http+path, 0, func(evs []sseEvent) bool { return countType(evs, "dtmf") == 4 })
	if len(owner) < 5 {
		t.Fatalf("the owner's stream: %+v", owner)
	}
	for i, e := range owner {
		if e.Event.Seq != uint64(i+1) || e.ID != e.Event.Seq || e.Event.Node != "m1" {
			t.Fatalf("owner's event %d: %+v, want Seq %d from m1", i, e, i+1)
		}
	}
	for _, n := range nodes[1:] {
		got := readSSE(t, "http://"+n.http+path, 0, func(evs []sseEvent) bool { return len(evs) == len(owner) })
		if !reflect.DeepEqual(got, owner) {
			t.Errorf("%s's stream differs from the owner's:\n got %+v\nwant %+v", n.name, got, owner)
		}
	}
	// Resume on m3 after the owner's 3rd event.
	k := owner[2].ID
	tail := readSSE(t, "http://"+nodes[2].http+path, k, func(evs []sseEvent) bool { return len(evs) == len(owner)-3 })
	if !reflect.DeepEqual(tail, owner[3:]) {
		t.Errorf("resumed on m3 after %d:\n got %+v\nwant %+v", k, tail, owner[3:])
	}
	// The end of the call ends the stream on another node.
	ended := make(chan []sseEvent, 1)
	go func() {
		ended <- readSSE(t, "http://"+nodes[1].http+path, owner[len(owner)-1].ID, func([]sseEvent) bool { return false })
	}()
	time.Sleep(500 * time.Millisecond)
	_ = pc.Hangup(ctx)
	select {
	case evs := <-ended:
		if n := countType(evs, "call.ended"); n != 1 || evs[len(evs)-1].Event.Type.String() != "call.ended" {
			t.Errorf("m2's stream after the hang-up: %+v, want it to end with call.ended", evs)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("m2's stream did not end with the call")
	}

	// A room's stream: two phones join room blue (hosted wherever its
	// grain says) from m2 and m3; every node shows the host's stream.
	var ps []*testharness.PhoneCall
	for _, n := range nodes[1:] {
		p, err := phone.Call(ctx, "sip:room-blue@"+n.sip)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Hangup(context.Background()) }()
		ps = append(ps, p)
	}
	rpath := "/api/sessions/room:blue/events"
	host := readSSE(t, "http://"+m1.http+rpath, 0, func(evs []sseEvent) bool { return countType(evs, "leg.joined") == 2 })
	if countType(host, "leg.joined") != 2 {
		t.Fatalf("room blue's stream: %+v, want two leg.joined", host)
	}
	for _, n := range nodes {
		got := readSSE(t, "http://"+n.http+rpath, 0, func(evs []sseEvent) bool { return len(evs) == len(host) })
		if !reflect.DeepEqual(got, host) {
			t.Errorf("%s's stream of room blue differs:\n got %+v\nwant %+v", n.name, got, host)
		}
	}
}
