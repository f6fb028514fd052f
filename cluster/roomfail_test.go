package cluster

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A cluster room outlives its host. Room NAME is hosted on m3 (its grain
// places it there); a phone on m1 (700 Hz) and one on m2 (1200 Hz) are in
// it through relays, a silent phone on m3 directly; m1's and m2's phones
// hear each other. m3 is killed with SIGKILL: within seconds m1's phone
// hears m2's tone again and m2's m1's, through the room at its new host
// (one host for both: the grain decides); neither phone got a BYE; each
// re-joined call has a room.rejoined event; m3's own calls got node-lost
// CDRs. Without the re-join the relays to the dead host stay silent until
// the media timeout (30 s) ends the calls.
func TestRoomSurvivesHostDeath(t *testing.T) {
	nodes := startThree(t, "roomfail")
	m1, m2, m3 := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	room := roomOn(t, m1, "survive", "m3")
	a, b, c := threeInRoom(t, ctx, room, m1, m2, m3)
	hears := func(who string, pc *testharness.PhoneCall, f float64, d time.Duration) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		if _, err := pc.WaitTone(wctx, f, 20); err != nil {
			t.Fatalf("%s does not hear %.0f Hz: %v", who, f, err)
		}
	}
	hears("A on m1", a, fb, 15*time.Second)
	hears("B on m2", b, fa, 15*time.Second)
	for _, n := range []*nodeProc{m1, m2} {
		if l := n.logLines("relay to the room's host bridged", "room="+room); len(l) != 1 {
			t.Fatalf("%s has %d relays to %s's host, want 1", n.name, len(l), room)
		}
	}

	time.Sleep(300 * time.Millisecond) // past the 100 ms the call lists take to spread
	markA, markB := a.Mark(), b.Mark()
	killed := time.Now()
	m3.kill()

	// Each phone loses the other's tone (the mixer died), then hears it
	// again through the room's new host.
	for _, r := range hearAgain(t, ctx, killed, []listener{{"A on m1", a, fb, markA}, {"B on m2", b, fa, markB}}) {
		t.Logf("%s hears the other phone again %s after the kill (silent for %d ms)", r.who, r.after.Round(10*time.Millisecond), r.gap*20)
		if r.after > 15*time.Second {
			t.Errorf("%s took %s to hear the room again, want a few seconds", r.who, r.after)
		}
	}
	// Where the time went: membership noticing the death (etcd's lease),
	// then the re-join itself.
	for _, n := range []*nodeProc{m1, m2} {
		left, rejoined := n.logLines("cluster: node left", "peer=m3"), n.logLines("re-joining the room at its host", "room="+room)
		if len(left) > 0 && len(rejoined) > 0 {
			tl, tr := logTime(left[0]), logTime(rejoined[0])
			t.Logf("%s saw m3 leave %s after the kill and asked the room's new host %s later", n.name,
				tl.Sub(killed).Round(10*time.Millisecond), tr.Sub(tl).Round(time.Millisecond))
		}
	}
	if t.Failed() {
		return
	}

	// Still the same calls: no BYE reached either phone.
	for _, p := range []struct {
		who string
		pc  *testharness.PhoneCall
	}{{"A", a}, {"B", b}} {
		select {
		case <-p.pc.Leg.Done():
			t.Errorf("%s's call ended (%v)", p.who, p.pc.Leg.Err())
		default:
		}
	}
	// Both re-joined the same host, one of the survivors, which placed
	// the room once.
	hosts := map[string]bool{}
	for _, n := range []*nodeProc{m1, m2} {
		lines := n.logLines("re-joining the room at its host", "room="+room, "reason=\"host lost\"")
		if len(lines) != 1 {
			t.Errorf("%s re-joined %d times, want once: %v", n.name, len(lines), lines)
			continue
		}
		i := strings.Index(lines[0], " host=")
		hosts[strings.Fields(lines[0][i+1:])[0]] = true
	}
	if len(hosts) != 1 || hosts["host=m3"] {
		t.Errorf("the survivors re-joined %v, want one live host", hosts)
	}
	placed := len(m1.logLines("cluster: room placed", "room="+room)) + len(m2.logLines("cluster: room placed", "room="+room))
	if placed != 1 {
		t.Errorf("the survivors placed %s %d times, want once", room, placed)
	}
	// Each re-joined call has its room.rejoined event, from any node.
	for _, p := range []struct {
		who string
		pc  *testharness.PhoneCall
	}{{"A", a}, {"B", b}} {
		evs := readSSE(t, "http://"+m1.http+"/api/sessions/"+p.pc.Leg.ID()+"/events", 0, func(evs []sseEvent) bool {
			return rejoinedEvent(evs) != nil
		})
		d := rejoinedEvent(evs)
		if d == nil {
			t.Errorf("%s's call has no %s event", p.who, EventRoomRejoined)
			continue
		}
		if d.Room != room || d.OldHost != "m3" || d.Reason != "host lost" || d.Host == "m3" {
			t.Errorf("%s's %s event: %+v", p.who, EventRoomRejoined, *d)
		}
	}
	// m3's own call (the silent phone's) got a node-lost CDR from a
	// survivor.
	waitFor(t, 20*time.Second, "a node-lost CDR for m3's own call", func() bool {
		return len(m1.logLines("msg=cdr", "call_id="+c.Leg.ID(), `cause="node lost"`))+
			len(m2.logLines("msg=cdr", "call_id="+c.Leg.ID(), `cause="node lost"`)) == 1
	})
}

// rejoinedEvent is the data of the first room.rejoined signal in evs.
func rejoinedEvent(evs []sseEvent) *RejoinedData {
	for _, e := range evs {
		if e.Event.Type != framework.EventSignal {
			continue
		}
		var s struct {
			Name    string       `json:"name"`
			Payload RejoinedData `json:"payload"`
		}
		if json.Unmarshal(e.Event.Data, &s) == nil && s.Name == EventRoomRejoined {
			return &s.Payload
		}
	}
	return nil
}

// logTime is the time= of a node's log line (zero if it has none).
func logTime(line string) time.Time {
	_, rest, ok := strings.Cut(line, "time=")
	if !ok {
		return time.Time{}
	}
	ts, _, _ := strings.Cut(rest, " ")
	t, _ := time.Parse(time.RFC3339Nano, ts)
	return t
}

// listener is a phone that must hear freq again after a room's host died.
type listener struct {
	who  string
	pc   *testharness.PhoneCall
	freq float64
	mark int // the recording's length at the kill
}

// heardAgain is when a listener heard its tone again.
type heardAgain struct {
	who   string
	after time.Duration // since the kill
	gap   int           // 20 ms frames between the last frame of the tone and its return
}

// hearAgain waits, for every listener at once, until it no longer hears
// its tone (within 10 s of the kill), then until it hears it again
// (within 30 s); it reports when, and the silence in between measured
// on the recording.
func hearAgain(t *testing.T, ctx context.Context, killed time.Time, ls []listener) []heardAgain {
	t.Helper()
	results := make(chan heardAgain, len(ls))
	var wg sync.WaitGroup
	for _, p := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := p.pc.WaitFor(wctx, 300*time.Millisecond, func(l testharness.Listen) bool {
				return !(l.RMS > 300 && l.Frequency >= p.freq-20 && l.Frequency <= p.freq+20)
			})
			wcancel()
			if err != nil {
				t.Errorf("%s still hears %.0f Hz 10 s after the host died: %v", p.who, p.freq, err)
				return
			}
			wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
			_, err = p.pc.WaitTone(wctx, p.freq, 20)
			wcancel()
			if err != nil {
				t.Errorf("%s does not hear %.0f Hz again within 30 s of the host's death: %v", p.who, p.freq, err)
				return
			}
			after := time.Since(killed)
			time.Sleep(300 * time.Millisecond)
			heard, rate := p.pc.Heard(p.mark)
			frames := toneFrames(heard, rate, p.freq)
			last, first := -1, -1
			for i := range frames {
				if frames[i] && first < 0 && last >= 0 && i > last+10 { // back after a silence, not a dropout
					first = i
				}
				if frames[i] && first < 0 {
					last = i
				}
			}
			results <- heardAgain{p.who, after, first - last - 1}
		}()
	}
	wg.Wait()
	close(results)
	var out []heardAgain
	for r := range results {
		out = append(out, r)
	}
	return out
}

// A leg moved (Node.Move) into a room on another node is re-joined too
// when that node dies. D, a phone parked on m1, is moved into room NAME
// hosted on m3, where B (a phone on m2, through a relay) is; they hear
// each other. m3 is killed: m1 moves D into the room at its new host and
// m2 re-joins B there; they hear each other again, D's call still up, and
// D's new relay call has the room.rejoined event.
func TestMovedLegSurvivesRoomHostDeath(t *testing.T) {
	nodes := startThree(t, "movefail")
	m1, m2, m3 := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	room := roomOn(t, m1, "movesurvive", "m3")
	call := func(uri string) *testharness.PhoneCall {
		pc, err := phone.Call(ctx, uri)
		if err != nil {
			t.Fatalf("call %s: %v", uri, err)
		}
		t.Cleanup(func() {
			hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer hcancel()
			_ = pc.Hangup(hctx)
		})
		return pc
	}
	const fd, fb = 700, 1200
	b := call("sip:room-" + room + "@" + m2.sip)
	b.Play(tone(fb))
	d := call("sip:park@" + m1.sip)
	d.Play(tone(fd))
	if code := httpPost(t, "http://"+m2.http+"/api/calls/"+d.Leg.ID()+"/move?room="+room); code != 204 {
		t.Fatalf("move D into %s: %d, want 204", room, code)
	}
	for _, h := range []struct {
		who string
		pc  *testharness.PhoneCall
		f   float64
	}{{"D (moved) on m1", d, fb}, {"B on m2", b, fd}} {
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		if _, err := h.pc.WaitTone(wctx, h.f, 20); err != nil {
			t.Fatalf("%s does not hear %.0f Hz: %v", h.who, h.f, err)
		}
		wcancel()
	}
	time.Sleep(300 * time.Millisecond)
	markD, markB := d.Mark(), b.Mark()
	killed := time.Now()
	m3.kill()
	for _, r := range hearAgain(t, ctx, killed, []listener{{"D (moved) on m1", d, fb, markD}, {"B on m2", b, fd, markB}}) {
		t.Logf("%s hears the other phone again %s after the kill (silent for %d ms)", r.who, r.after.Round(10*time.Millisecond), r.gap*20)
	}
	if t.Failed() {
		return
	}
	select {
	case <-d.Leg.Done():
		t.Errorf("D's call ended (%v)", d.Leg.Err())
	default:
	}
	lines := m1.logLines("moved leg re-joined its room at the new host", "room="+room)
	if len(lines) != 1 {
		t.Fatalf("m1 logged %d re-joins of the moved leg, want 1", len(lines))
	}
	// The event is on the relay call that now carries D (unless m1
	// itself became the host: D is then in m1's room, in no call).
	if strings.Contains(lines[0], " host=m1") {
		t.Logf("the room's new host is m1: D moved into its room there")
		return
	}
	t.Logf("the room's new host is m2: D moved into a new relay to it")
	var relayID string
	for _, l := range m1.logLines("leg moved to another node", "room="+room) {
		_, rest, _ := strings.Cut(l, "relay_call_id=")
		relayID, _, _ = strings.Cut(rest, " ")
	}
	// Read on m1: the relay's far end on m2 (answered by RoomHandler) is a
	// call with the same ID there (the SIP Call-ID), which m2 would serve.
	evs := readSSE(t, "http://"+m1.http+"/api/sessions/"+relayID+"/events", 0, func(evs []sseEvent) bool {
		return rejoinedEvent(evs) != nil
	})
	if ev := rejoinedEvent(evs); ev == nil || ev.Room != room || ev.Reason != "host lost" {
		t.Errorf("D's new relay call %s: %s event %+v; m1 logged %q", relayID, EventRoomRejoined, ev, m1.logLines("re-join signal"))
	}
}

// SIGTERM to a node hosting a room hands the room over before the node
// drains. Room NAME is hosted on m3 (--drain 30s); A (700 Hz, on m1) and
// B (1200 Hz, on m2) are in it through relays, C (silent) on m3 itself.
// m3 gets SIGTERM: m1 and m2 re-join the room at a new host at once
// (reason "host draining"), m3 moves C there through a relay, so A and B
// hear each other and C hears both while m3 drains; the grain names the
// new host. A second SIGTERM ends the drain: C gets BYE, m3 leaves, A and
// B go on hearing each other, and nobody writes a node-lost CDR.
func TestRoomHandedOverOnDrain(t *testing.T) {
	nodes := startThreeWith(t, "roomdrain", map[int][]string{2: {"--drain", "30s"}})
	m1, m2, m3 := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	room := roomOn(t, m1, "drained", "m3")
	a, b, c := threeInRoom(t, ctx, room, m1, m2, m3)
	hears := func(who string, pc *testharness.PhoneCall, f float64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		defer wcancel()
		if _, err := pc.WaitTone(wctx, f, 20); err != nil {
			t.Fatalf("%s does not hear %.0f Hz: %v", who, f, err)
		}
	}
	hears("A on m1", a, fb)
	hears("B on m2", b, fa)

	time.Sleep(300 * time.Millisecond)
	markA, markB := a.Mark(), b.Mark()
	if err := m3.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "m3 to hand its rooms over", func() bool {
		return len(m3.logLines("cluster: rooms handed over")) == 1
	})
	handed := m3.logLines("cluster: rooms handed over")[0]
	t.Logf("m3: %s", handed[strings.Index(handed, "msg="):])
	if !strings.Contains(handed, "moved=1 failed=0") {
		t.Errorf("m3 handed over %q, want its one member moved", handed)
	}
	hosts := map[string]bool{}
	for _, n := range []*nodeProc{m1, m2} {
		var lines []string
		waitFor(t, 10*time.Second, n.name+" to re-join "+room, func() bool {
			lines = n.logLines("re-joining the room at its host", "room="+room, `reason="host draining"`)
			return len(lines) > 0
		})
		i := strings.Index(lines[0], " host=")
		hosts[strings.Fields(lines[0][i+1:])[0]] = true
	}
	if len(hosts) != 1 || hosts["host=m3"] {
		t.Fatalf("m1 and m2 re-joined %v, want one host other than m3", hosts)
	}
	hears("A after the hand-over", a, fb)
	hears("B after the hand-over", b, fa)
	time.Sleep(time.Second) // some audio after the hand-over
	for _, l := range []listener{{"A", a, fb, markA}, {"B", b, fa, markB}} {
		heard, rate := l.pc.Heard(l.mark)
		t.Logf("%s missed at most %d ms of the other's tone during the hand-over", l.who, longestGap(toneFrames(heard, rate, l.freq))*20)
	}
	// C, drained on m3 but moved into the room at its new host, hears both.
	waitFor(t, 10*time.Second, "C on the draining m3 to hear A and B", func() bool {
		from := max(0, c.Mark()-8000) // the last second
		return c.ToneShare(from, fa) > 0.2 && c.ToneShare(from, fb) > 0.2
	})
	var where struct {
		Member
	}
	getJSON(t, "http://"+m1.http+"/api/rooms/"+room, &where)
	if where.Node == "m3" || !hosts["host="+where.Node] {
		t.Errorf("the grain names %q as %s's host, want the one everyone re-joined (%v)", where.Node, room, hosts)
	}

	// End the drain: C goes, the room goes on without m3.
	if err := m3.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Leg.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("C got no BYE when m3's drain ended")
	}
	select {
	case <-m3.done:
	case <-time.After(20 * time.Second):
		t.Fatal("m3 did not exit")
	}
	for _, n := range []*nodeProc{m1, m2} {
		waitFor(t, 10*time.Second, n.name+" to see 2 members", func() bool { return len(n.members(t)) == 2 })
	}
	time.Sleep(time.Second)
	markA, markB = a.Mark(), b.Mark()
	time.Sleep(time.Second)
	if s := a.ToneShare(markA, fb); s < 0.5 {
		t.Errorf("after m3 left, A hears B's tone in %.2f of its audio", s)
	}
	if s := b.ToneShare(markB, fa); s < 0.5 {
		t.Errorf("after m3 left, B hears A's tone in %.2f of its audio", s)
	}
	for _, n := range []*nodeProc{m1, m2} {
		if l := n.logLines(`cause="node lost"`); len(l) > 0 {
			t.Errorf("%s wrote a node-lost CDR for a node that drained: %s", n.name, l[0])
		}
		if l := n.logLines("re-joining the room at its host", "room="+room); len(l) != 1 {
			t.Errorf("%s re-joined %d times, want once (at the hand-over): %v", n.name, len(l), l)
		}
	}
}

// longestGap is the longest run of frames without the tone between the
// first and the last frame with it.
func longestGap(frames []bool) int {
	longest, run, seen := 0, 0, false
	for _, ok := range frames {
		switch {
		case ok:
			if seen {
				longest = max(longest, run)
			}
			seen, run = true, 0
		case seen:
			run++
		}
	}
	return longest
}

// The tones of threeInRoom's callers on m1 and m2.
const fa, fb = 700, 1200

// threeInRoom calls room from a phone on each of m1, m2 and m3: c on m3
// (the room's host) stays silent, a on m1 plays fa and b on m2 fb.
func threeInRoom(t *testing.T, ctx context.Context, room string, m1, m2, m3 *nodeProc) (a, b, c *testharness.PhoneCall) {
	t.Helper()
	phone := newPhone(t, 47000, 47999)
	c = callRoom(t, ctx, phone, room, m3)
	c.Play(media.Silence(100 * time.Second))
	a, b = callRoom(t, ctx, phone, room, m1), callRoom(t, ctx, phone, room, m2)
	a.Play(tone(fa))
	b.Play(tone(fb))
	return a, b, c
}
