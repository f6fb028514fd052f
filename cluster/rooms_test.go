package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// startThree runs three etcd nodes (m1..m3) that see each other with
// their SIP addresses.
func startThree(t *testing.T, prefix string) []*nodeProc {
	t.Helper()
	return startThreeSecret(t, prefix, true)
}

// startThreeWith is startThree with extra flags for some nodes (by index).
func startThreeWith(t *testing.T, prefix string, extra map[int][]string) []*nodeProc {
	t.Helper()
	return startCluster(t, prefix, "m", 3, nodeSpec{}, func(i int, s *nodeSpec) { s.extra = append(s.extra, extra[i]...) })
}

// startThreeSecret starts three etcd nodes, with the tests' cluster secret
// or without one.
func startThreeSecret(t *testing.T, prefix string, secret bool) []*nodeProc {
	t.Helper()
	return startCluster(t, prefix, "m", 3, nodeSpec{noSecret: !secret})
}

func tone(f float64) media.Source {
	return audio.NewTone(audio.Tone{Freqs: []float64{f}, Duration: 50 * time.Second})
}

// A room is a cluster identity: phones calling room-red on each of three
// nodes land in one mixer, on the one node the room's grain picked. Each
// phone speaks in turn and both others must hear it: with a room per
// node, the phones on the two non-hosts would not hear each other. Every
// node lists the three calls once each.
func TestClusterRoomIsOneMixerFromEveryNode(t *testing.T) {
	nodes := startThreeSecret(t, "rooms", false) // the source-address check (TestSignedRelays has the signatures)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	// Without a cluster secret the relay routes between nodes are for
	// members' addresses only: a caller from an address that is no
	// member's SIP address (127.0.0.2 here, every node is on 127.0.0.1)
	// gets 403 for each of them.
	stranger, err := testharness.NewPhone(testharness.PhoneOptions{Addr: "127.0.0.2:0", RTPPortMin: 47000, RTPPortMax: 47999, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for _, user := range []string{RoomUserPrefix + "red", CallUserPrefix + "x", UserUserPrefix + "alice"} {
		if _, err := stranger.Call(ctx, "sip:"+user+"@"+nodes[0].sip); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("a stranger calling %s: %v, want 403", user, err)
		}
	}
	var calls []*testharness.PhoneCall
	for _, n := range nodes {
		pc, err := phone.Call(ctx, "sip:room-red@"+n.sip)
		if err != nil {
			t.Fatalf("call room-red on %s: %v", n.name, err)
		}
		defer func() { _ = pc.Hangup(context.Background()) }()
		calls = append(calls, pc)
	}
	freqs := []float64{700, 1200, 1800}
	for i, speaker := range calls {
		speaker.Play(tone(freqs[i]))
		for j, listener := range calls {
			if j == i {
				continue
			}
			wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
			if _, err := listener.WaitTone(wctx, freqs[i], 20); err != nil {
				t.Errorf("the phone on %s does not hear the one on %s (%.0f Hz): %v", nodes[j].name, nodes[i].name, freqs[i], err)
			}
			wcancel()
		}
		speaker.Play(media.Silence(50 * time.Second))
	}
	// Exactly one node placed the room; the other two reached it by relay,
	// passing packets through (the same codec on both legs).
	placed, relays := 0, 0
	for _, n := range nodes {
		placed += len(n.logLines("cluster: room placed", "room=red"))
		for _, l := range n.logLines("relay to the room's host bridged", "room=red") {
			relays++
			if !strings.Contains(l, "passthrough=true") {
				t.Errorf("%s transcodes on its relay: %s", n.name, l)
			}
		}
	}
	if placed != 1 {
		t.Errorf("room red placed %d times, want once", placed)
	}
	if relays != 2 {
		t.Errorf("%d relays to red's host, want 2 (one per other node)", relays)
	}
	// Each caller's session is listed once, on the caller's node: the two
	// callers on other nodes than the host name their relay to it, and the
	// relays' far ends on the host are not listed as calls of their own.
	for _, n := range nodes {
		var list []NodeCall
		var errText string
		ok := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(100 * time.Millisecond) {
			list, errText = n.calls(t)
			ok = errText == "" && len(list) == 3
			hosts := map[string]bool{}
			for _, c := range list {
				switch len(c.Relays) {
				case 0:
					hosts[c.Node] = true
				case 1:
					ok = ok && c.Relays[0].Node != "" && c.Relays[0].Node != c.Node
				default:
					ok = false
				}
			}
			ok = ok && len(hosts) == 1
			for _, c := range list {
				ok = ok && (len(c.Relays) == 0 || hosts[c.Relays[0].Node])
			}
		}
		if !ok {
			t.Errorf("%s lists %+v (%s), want the three callers once each, two naming their relay to the host", n.name, list, errText)
		}
	}
}

// toneAt is the first 20 ms frame index at or after from whose dominant
// tone is freq (±20 Hz, not silent), or -1.
func toneFrames(heard []int16, rate int, freq float64) []bool {
	frame := rate / 50
	out := make([]bool, 0, len(heard)/frame)
	for i := 0; i+frame <= len(heard); i += frame {
		s := heard[i : i+frame]
		f, _ := dsp.DominantFrequency(s, rate, 100, 3800, 10)
		out = append(out, dsp.RMS(s) > 300 && f >= freq-25 && f <= freq+25)
	}
	return out
}

// gap is the time between the last frame of the old tone before the
// first frame of the new one and that first frame (the audio the moved
// leg missed), in 20 ms frames; -1 if the new tone never came.
func gapFrames(heard []int16, rate int, oldF, newF float64) int {
	o, nw := toneFrames(heard, rate, oldF), toneFrames(heard, rate, newF)
	first := -1
	for i, ok := range nw {
		// the new tone, held for 5 frames (not a transient)
		if ok && i+5 <= len(nw) && nw[i+1] && nw[i+2] && nw[i+3] && nw[i+4] {
			first = i
			break
		}
	}
	if first < 0 {
		return -1
	}
	last := -1
	for i := first - 1; i >= 0; i-- {
		if o[i] {
			last = i
			break
		}
	}
	return first - last - 1
}

// roomOn finds a room name (prefix-N) whose grain places it on node, by
// asking m's HTTP API; asking pins the room there.
func roomOn(t *testing.T, m *nodeProc, prefix, node string) string {
	t.Helper()
	for i := range 64 {
		name := fmt.Sprintf("%s%d", prefix, i)
		var body struct {
			Room string `json:"room"`
			Member
		}
		getJSON(t, "http://"+m.http+"/api/rooms/"+name, &body)
		if body.Node == node {
			return name
		}
	}
	t.Fatalf("no room %s0..63 placed on %s", prefix, node)
	return ""
}

func httpPost(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Logf("POST %s: %s %s", url, resp.Status, body)
	}
	return resp.StatusCode
}

// Moves of one leg across nodes, both ways. A is a phone whose dialog and
// media stay on m1 throughout. A talks to reflect on m1, then is moved
// into room green (hosted on m2, where B is), from there into room blue
// (hosted on m3, where C is), back into a call on its own node m1 (D,
// parked), and into a call on m2 (E, parked). Each move is asked of a
// node other than A's. At every hop A must hear only the new party's
// tone and the new party A's 700 Hz; a party A left stops hearing it.
// The gap at A — the 20 ms frames between the last one of the old tone
// and the first of the new — is measured from what A heard.
func TestMoveLegAcrossNodesAndBack(t *testing.T) {
	nodes := startThree(t, "moves")
	m1, m2, m3 := nodes[0], nodes[1], nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	call := func(uri string, f float64) *testharness.PhoneCall {
		pc, err := phone.Call(ctx, uri)
		if err != nil {
			t.Fatalf("call %s: %v", uri, err)
		}
		t.Cleanup(func() { _ = pc.Hangup(context.Background()) })
		pc.Play(tone(f))
		return pc
	}
	hears := func(who string, pc *testharness.PhoneCall, f float64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		defer wcancel()
		if _, err := pc.WaitTone(wctx, f, 20); err != nil {
			t.Fatalf("%s does not hear %.0f Hz: %v", who, f, err)
		}
	}
	stopsHearing := func(who string, pc *testharness.PhoneCall, f float64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if _, err := pc.WaitFor(wctx, 300*time.Millisecond, func(l testharness.Listen) bool {
			return !(l.RMS > 300 && l.Frequency >= f-20 && l.Frequency <= f+20)
		}); err != nil {
			t.Errorf("%s still hears %.0f Hz after A left: %v", who, f, err)
		}
	}
	green := roomOn(t, m1, "green", "m2")
	blue := roomOn(t, m1, "blue", "m3")
	b := call("sip:room-"+green+"@"+m2.sip, 1200)
	c := call("sip:room-"+blue+"@"+m3.sip, 1600)
	d := call("sip:park@"+m1.sip, 900)
	e := call("sip:park@"+m2.sip, 500)
	a := call("sip:reflect@"+m1.sip, 700)
	hears("A on reflect", a, 700)

	var gaps []string
	hop := func(via *nodeProc, query string, oldF, newF float64, party *testharness.PhoneCall, partyName string) {
		t.Helper()
		mark := a.Mark()
		if code := httpPost(t, "http://"+via.http+"/api/calls/"+a.Leg.ID()+"/move?"+query); code != http.StatusNoContent {
			t.Fatalf("move A ?%s at %s: %d, want 204", query, via.name, code)
		}
		hears("A (moved to "+query+")", a, newF)
		hears(partyName+" after A moved in", party, 700)
		time.Sleep(300 * time.Millisecond) // a little of the new audio after the switch
		heard, rate := a.Heard(mark)
		g := gapFrames(heard, rate, oldF, newF)
		if g < 0 {
			t.Fatalf("A's recording after ?%s has no %.0f Hz", query, newF)
		}
		gaps = append(gaps, fmt.Sprintf("%s: %d ms", query, g*20))
		if g*20 > 1000 {
			t.Errorf("A missed %d ms of audio moving to %s, want at most 1 s", g*20, query)
		}
	}
	hop(m3, "room="+green, 700, 1200, b, "B in green on m2")
	hop(m2, "room="+blue, 1200, 1600, c, "C in blue on m3")
	stopsHearing("B in green", b, 700)
	hop(m3, "call="+d.Leg.ID(), 1600, 900, d, "D parked on m1")
	stopsHearing("C in blue", c, 700)
	hop(m3, "call="+e.Leg.ID(), 900, 500, e, "E parked on m2")
	stopsHearing("D parked on m1", d, 700)
	t.Logf("audio gap at the moved leg: %s", strings.Join(gaps, ", "))

	// Relays that lost their moved leg ended: m1 holds D's call and the
	// relay to E's call; m2 holds B's, E's and the relay's far end
	// (moved into E's call, so not a call of its own any more), m3 C's.
	waitFor(t, 10*time.Second, "the old relays to end", func() bool {
		list, _ := m2.calls(t)
		per := map[string]int{}
		for _, c := range list {
			per[c.Node]++
		}
		return per["m1"] == 2 && per["m3"] == 1 && per["m2"] == 2
	})
	if n := len(m1.logLines("leg moved to another node", "passthrough=true")); n != 3 {
		t.Errorf("m1 logged %d cross-node moves passing packets through, want 3", n)
	}
	_ = a.Hangup(ctx)
	waitFor(t, 10*time.Second, "A's hang-up to end the relay to E's call", func() bool {
		list, _ := m2.calls(t)
		return len(list) == 4 // B, C, D, E
	})
}

// grainOwner is the node disthash activates room's grain on, computed as
// protoactor does (rendezvous hashing over the members' addresses).
func grainOwner(t *testing.T, nodes []*nodeProc, room string) *nodeProc {
	t.Helper()
	var ms []*pcluster.Member
	byAddr := map[string]*nodeProc{}
	for _, n := range nodes {
		host, port, err := net.SplitHostPort(n.cluster)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		ms = append(ms, &pcluster.Member{Host: host, Port: int32(p), Id: n.name, Kinds: []string{roomKind}})
		byAddr[n.cluster] = n
	}
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(ms)
	return byAddr[rdv.GetByClusterIdentity(pcluster.NewClusterIdentity(room, roomKind))]
}

// A room already live on a node that is not its grain's (it was opened
// there directly, as it would be after a membership change moved the
// grain) keeps its host: the grain adopts it from the replicated lists,
// and a caller on a third node joins that room, not a new one.
func TestRoomGrainAdoptsALiveRoom(t *testing.T) {
	nodes := startThree(t, "adopt")
	m1 := nodes[0]
	room := ""
	var owner *nodeProc
	for i := range 64 {
		name := fmt.Sprintf("live%d", i)
		if o := grainOwner(t, nodes, name); o != nil && o != m1 {
			room, owner = name, o
			break
		}
	}
	if room == "" {
		t.Fatal("no room name whose grain is not on m1")
	}
	other := nodes[1]
	if owner == other {
		other = nodes[2]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	// P1 opens the room on m1 itself (not through the grain).
	p1, err := callRelay(ctx, phone, RoomUserPrefix+room, m1.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p1.Hangup(context.Background()) }()
	waitFor(t, 5*time.Second, other.name+" to learn that "+room+" is live on m1", func() bool {
		for _, m := range other.members(t) {
			if m.Node == "m1" && slices.Contains(m.Rooms, room) {
				return true
			}
		}
		return false
	})
	p2, err := phone.Call(ctx, "sip:room-"+room+"@"+other.sip)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p2.Hangup(context.Background()) }()
	p1.Play(tone(700))
	p2.Play(tone(1200))
	if _, err := p2.WaitTone(ctx, 700, 20); err != nil {
		t.Errorf("P2 (on %s) does not hear P1 in m1's room: %v", other.name, err)
	}
	if _, err := p1.WaitTone(ctx, 1200, 20); err != nil {
		t.Errorf("P1 does not hear P2: %v", err)
	}
	if got := owner.logLines("cluster: room placed", "room="+room, "host=m1"); len(got) != 1 {
		t.Errorf("%s (the grain's node) did not place %s on m1: %v", owner.name, room, got)
	}
}
