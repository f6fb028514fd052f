package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

func TestDecideRejoin(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("dial: %w", &sip.StatusError{Code: code, Reason: "x"})
	}
	for _, tc := range []struct {
		name   string
		end    relayEnd
		rejoin bool
		reason string
	}{
		{"the member hung up", relayEnd{CallerGone: true, Err: framework.ErrHangup}, false, ""},
		{"the member hung up as the host left", relayEnd{CallerGone: true, HostLost: true}, false, ""},
		{"the host left the cluster", relayEnd{HostLost: true}, true, "host lost"},
		{"the live host hung up (kicked, room closed)", relayEnd{Cause: "remote hangup"}, false, ""},
		{"the relay ended, cause unknown", relayEnd{}, false, ""},
		{"the relay's RTP stopped", relayEnd{Cause: "media timeout"}, true, "relay ended: media timeout"},
		{"the relay's session expired", relayEnd{Cause: "session expired"}, true, "relay ended: session expired"},
		{"the host is draining (503)", relayEnd{Err: status(503)}, true, "relay failed: dial: 503 x"},
		{"the dial timed out (408)", relayEnd{Err: status(408)}, true, "relay failed: dial: 408 x"},
		{"the host's INVITE got no answer", relayEnd{Err: fmt.Errorf("ring timeout: %w", sip.ErrNoAnswer)}, true, "relay failed: ring timeout: sip: no answer"},
		{"the host refused the relay (403)", relayEnd{Err: status(403)}, false, ""},
		{"no such route on the host (404)", relayEnd{Err: status(404)}, false, ""},
		{"busy everywhere (600)", relayEnd{Err: status(600)}, false, ""},
		{"busy", relayEnd{Err: sip.ErrBusy}, false, ""},
		{"the relay leg was moved elsewhere", relayEnd{Err: framework.ErrLegMoved}, false, ""},
		{"a network error", relayEnd{Err: errors.New("sendto: connection refused")}, true, "relay failed: sendto: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			again, why := decideRejoin(tc.end)
			if again != tc.rejoin || why != tc.reason {
				t.Errorf("decideRejoin(%+v) = %v, %q; want %v, %q", tc.end, again, why, tc.rejoin, tc.reason)
			}
		})
	}
}

func TestRejoinBudget(t *testing.T) {
	lim := RejoinLimits{Max: 3, Window: time.Minute, Backoff: 200 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	const ms = time.Millisecond
	for _, tc := range []struct {
		name  string
		at    []time.Duration // the takes, after t0
		ok    []bool
		waits []time.Duration
	}{
		{"the first re-join is at once, then backoff doubles up to the cap",
			[]time.Duration{0, time.Second, 2 * time.Second},
			[]bool{true, true, true}, []time.Duration{0, 200 * ms, 300 * ms}},
		{"no more than Max within Window",
			[]time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second, 59 * time.Second},
			[]bool{true, true, true, false, false}, []time.Duration{0, 200 * ms, 300 * ms, 0, 0}},
		{"old re-joins leave the window",
			[]time.Duration{0, 10 * time.Second, 20 * time.Second, 61 * time.Second, 62 * time.Second, 71 * time.Second},
			[]bool{true, true, true, true, false, true}, []time.Duration{0, 200 * ms, 300 * ms, 300 * ms, 0, 300 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rejoinBudget{lim: lim}
			for i, d := range tc.at {
				ok, wait := b.take(t0.Add(d))
				if ok != tc.ok[i] || wait != tc.waits[i] {
					t.Errorf("take %d at +%s = %v, %s; want %v, %s", i, d, ok, wait, tc.ok[i], tc.waits[i])
				}
			}
		})
	}
	def := RejoinLimits{}.withDefaults()
	if def != defaultRejoinLimits {
		t.Errorf("zero limits with defaults = %+v, want %+v", def, defaultRejoinLimits)
	}
	if got := (RejoinLimits{Max: 2, AskTimeout: time.Minute}).withDefaults(); got.Max != 2 || got.AskTimeout != time.Minute || got.Window != time.Minute {
		t.Errorf("set limits lost or defaults not filled: %+v", got)
	}
	b := rejoinBudget{lim: def}
	if ok, wait := b.take(t0); !ok || wait != 0 {
		t.Errorf("the default limits' first re-join: %v after %s, want at once", ok, wait)
	}
}

// relayNode is a Node with a membership and nothing else: enough for the
// relay registry.
func relayNode(members ...string) *Node {
	n := &Node{self: "10.0.0.1:1", log: slog.New(slog.DiscardHandler), members: map[string]*Member{}, relays: map[*roomRelay]struct{}{}}
	n.members[n.self] = &Member{Addr: n.self, Self: true}
	for _, m := range members {
		n.members[m] = &Member{Addr: m}
	}
	return n
}

// Only the relays whose host left are told, each once, however many
// times (the topology handler and a later topology) the loss is reported;
// a relay registered after its host left is told at once.
func TestHostsLeftTellsTheRelaysOfThatHost(t *testing.T) {
	const c, d = "10.0.0.3:1", "10.0.0.4:1"
	n := relayNode(c, d)
	var toC1, toC2, toD atomic.Int32
	for _, r := range []struct {
		host  string
		count *atomic.Int32
	}{{c, &toC1}, {c, &toC2}, {d, &toD}} {
		rr := &roomRelay{room: "red", host: r.host}
		rr.setOnLost(func(string) { r.count.Add(1) })
		n.addRelay(rr)
	}
	n.hostsLeft([]string{c}, reasonHostLost)
	n.hostsLeft([]string{c, "10.0.0.9:1"}, reasonHostLost)
	if toC1.Load() != 1 || toC2.Load() != 1 || toD.Load() != 0 {
		t.Errorf("relays told: to C %d and %d, to D %d; want 1, 1, 0", toC1.Load(), toC2.Load(), toD.Load())
	}
	delete(n.members, c)
	var late atomic.Int32
	rr := &roomRelay{room: "red", host: c}
	rr.setOnLost(func(string) { late.Add(1) })
	n.addRelay(rr)
	if late.Load() != 1 {
		t.Errorf("a relay registered to a host already gone was told %d times, want 1", late.Load())
	}
	// A relay whose host left before it knew what to do runs it when set.
	rr = &roomRelay{room: "red", host: d}
	n.addRelay(rr)
	n.hostsLeft([]string{d}, reasonHostDraining)
	var set atomic.Int32
	rr.setOnLost(func(string) { set.Add(1) })
	if set.Load() != 1 || toD.Load() != 1 {
		t.Errorf("after D left: the late callback ran %d times, the early one %d; want 1, 1", set.Load(), toD.Load())
	}
	n.removeRelay(rr)
	if len(n.relays) != 4 {
		t.Errorf("%d relays registered, want 4", len(n.relays))
	}
}

// rejoinHost asks again while the grain names no live host (here: it
// cannot be asked at all), and gives up within its bounds: Asks, then
// AskWindow, then its ctx, whichever comes first.
func TestRejoinHostIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lim    RejoinLimits
		cancel bool
	}{
		{"three asks", RejoinLimits{Asks: 3, AskWindow: time.Minute, AskTimeout: 100 * time.Millisecond}, false},
		{"a 600 ms window", RejoinLimits{Asks: 1000, AskWindow: 600 * time.Millisecond, AskTimeout: 100 * time.Millisecond}, false},
		{"ctx ended", RejoinLimits{Asks: 1000, AskWindow: time.Minute, AskTimeout: 100 * time.Millisecond}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := relayNode()
			n.rejoin = tc.lim
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				cancel()
			}
			start := time.Now()
			if _, err := n.rejoinHost(ctx, "bad/name", ""); err == nil {
				t.Fatal("rejoinHost found a host for a room no grain can have")
			}
			// Unbounded, each would ask for a minute or more.
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("rejoinHost gave up after %s", d)
			}
		})
	}
}
