package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// startThree runs three etcd nodes (m1..m3) that see each other with
// their SIP addresses.
func startThree(t *testing.T, prefix string) []*nodeProc {
	t.Helper()
	bin := switchboardBinary(t)
	ep := startEtcd(t)
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	var nodes []*nodeProc
	for i := range 3 {
		nodes = append(nodes, startNode(t, bin, nodeSpec{name: fmt.Sprintf("m%d", i+1), clusterName: name, provider: "etcd", etcd: ep, rtpMin: 40000 + 2000*i}))
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
	return nodes
}

func tone(f float64) media.Source {
	return audio.NewTone(audio.Tone{Freqs: []float64{f}, Duration: 50 * time.Second})
}

// A room is a cluster identity: phones calling room-red on each of three
// nodes land in one mixer, on the one node the room's grain picked. Each
// phone speaks in turn and both others must hear it: with a room per
// node, the phones on the two non-hosts would not hear each other.
func TestClusterRoomIsOneMixerFromEveryNode(t *testing.T) {
	nodes := startThree(t, "rooms")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	phone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 47000, RTPPortMax: 47999, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
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
