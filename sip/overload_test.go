package sip

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// The scaled pending-INVITE limit is the INVITEs of the setup budget at
// the current rate, never under the floor: a fixed 200 would be a 25 ms
// budget at 8,000 calls/s.
func TestScaledPendingLimit(t *testing.T) {
	for _, tc := range []struct {
		perSecond int64
		budget    time.Duration
		want      int64
	}{
		{0, DefaultSetupBudget, DefaultMaxPendingInvites},
		{100, DefaultSetupBudget, DefaultMaxPendingInvites},
		{400, DefaultSetupBudget, 200},
		{401, DefaultSetupBudget, 200},
		{402, DefaultSetupBudget, 201},
		{2000, DefaultSetupBudget, 1000},
		{8000, DefaultSetupBudget, 4000},
		{8000, 100 * time.Millisecond, 800},
		{8000, time.Second, 8000},
		{1000, 10 * time.Millisecond, DefaultMaxPendingInvites},
	} {
		if got := scaledPendingLimit(tc.perSecond, tc.budget); got != tc.want {
			t.Errorf("scaledPendingLimit(%d/s, %s) = %d, want %d", tc.perSecond, tc.budget, got, tc.want)
		}
	}
}

// inviteRate reports the last whole second's count, or the current
// second's when already more, and forgets seconds with a gap after them.
func TestInviteRate(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var r inviteRate
	if got := r.perSecond(at(0)); got != 0 {
		t.Fatalf("fresh rate = %d, want 0", got)
	}
	for i := range 300 { // 300 in second 0
		r.add(at(i * 3))
	}
	if got := r.perSecond(at(950)); got != 300 {
		t.Errorf("within second 0: %d, want 300 (the count so far)", got)
	}
	for i := range 50 { // 50 in second 1
		r.add(at(1000 + i*10))
	}
	if got := r.perSecond(at(1600)); got != 300 {
		t.Errorf("in second 1 after 300 in second 0: %d, want 300", got)
	}
	if got := r.perSecond(at(2100)); got != 50 {
		t.Errorf("in second 2 after 50 in second 1: %d, want 50", got)
	}
	for range 700 { // a rising rate counts at once
		r.add(at(2200))
	}
	if got := r.perSecond(at(2300)); got != 700 {
		t.Errorf("700 so far in second 2: %d, want 700", got)
	}
	if got := r.perSecond(at(4500)); got != 0 {
		t.Errorf("after a whole second without INVITEs: %d, want 0", got)
	}
}

// pendingLimit: a positive MaxPendingInvites is a fixed count, a negative
// one no limit, zero the scaled limit with SetupBudget (default
// DefaultSetupBudget).
func TestPendingLimit(t *testing.T) {
	now := time.Now()
	busy := func(a *Agent) { // 3,000 INVITE transactions finished in the last second
		for range 3000 {
			a.setups.add(now)
		}
	}
	later := now.Add(time.Second)
	for _, tc := range []struct {
		name string
		o    OverloadOptions
		busy bool
		want int64
	}{
		{"default, idle", OverloadOptions{}, false, DefaultMaxPendingInvites},
		{"default, 3000/s", OverloadOptions{}, true, 1500},
		{"budget 1 s, 3000/s", OverloadOptions{SetupBudget: time.Second}, true, 3000},
		{"fixed 2", OverloadOptions{MaxPendingInvites: 2}, true, 2},
		{"fixed 200 does not scale", OverloadOptions{MaxPendingInvites: 200}, true, 200},
		{"off", OverloadOptions{MaxPendingInvites: -1}, true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{cfg: Config{Overload: tc.o}}
			if tc.busy {
				busy(a)
			}
			if got := a.pendingLimit(later); got != tc.want {
				t.Errorf("pendingLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

// BenchmarkPendingLimit is the cost the scaled limit adds to each INVITE:
// reading the rate and counting the finished transaction.
func BenchmarkPendingLimit(b *testing.B) {
	a := &Agent{}
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		_ = a.pendingLimit(now)
		a.setups.add(now)
	}
}

// INVITEs refused because the RTP port pool is empty get 503 each, but
// the log says so a few times a second, not once per INVITE.
func TestNoPortsRefusalsLogFewLines(t *testing.T) {
	// The pool's only pair is held by this test, so no call gets a port.
	held, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.LocalAddr().(*net.UDPAddr).Port
	ports, err := transport.NewPortPool(port&^1, port&^1+1)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	a, err := NewAgent(Config{
		ListenAddr: "127.0.0.1:0", Ports: ports, MediaTimeout: -1,
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		CallLimits: CallLimits{GuestCalls: -1, GuestRate: -1, GuestShare: -1},
		OnInvite:   func(l *Leg) { t.Error("a call got a port from a pool with none free") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	sig, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	local, server := sig.LocalAddr().String(), a.Addr().String()
	const invites = 40
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	for i := range invites {
		id := fmt.Sprintf("noports%d", i)
		msg := "INVITE sip:echo@" + server + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + "\r\n" +
			"From: <sip:t@guest.invalid>;tag=" + id + "\r\nTo: <sip:echo@" + server + ">\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\n" +
			"Contact: <sip:t@" + local + ">\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
		if _, err := sig.WriteToUDP([]byte(msg), net.UDPAddrFromAddrPort(a.Addr())); err != nil {
			t.Fatal(err)
		}
	}
	refused := map[string]bool{}
	buf := make([]byte, 4000)
	for end := time.Now().Add(10 * time.Second); len(refused) < invites && time.Now().Before(end); {
		_ = sig.SetReadDeadline(end)
		n, _, err := sig.ReadFromUDP(buf)
		if err != nil {
			break
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, "SIP/2.0 503") {
			continue
		}
		if !strings.Contains(msg, "no media ports") {
			t.Fatalf("503 without the reason: %q", msg)
		}
		for _, line := range strings.Split(msg, "\r\n") {
			if id, ok := strings.CutPrefix(line, "Call-ID: "); ok {
				refused[id] = true
			}
		}
	}
	if len(refused) != invites {
		t.Fatalf("%d of %d INVITEs refused with 503 (no media ports)", len(refused), invites)
	}
	lines := 0
	logs.mu.Lock()
	for _, l := range logs.kept {
		lines += strings.Count(l, "no RTP port for call")
	}
	logs.mu.Unlock()
	if lines == 0 || lines > 6 {
		t.Fatalf("%d log lines for %d refusals, want 1 to 6", lines, invites)
	}
}

// The scaled limit's rate counts INVITE transactions when they finish,
// not when they are admitted: a server that stops finishing them falls
// back to the floor.
func TestSetupRateCountsFinishedInvites(t *testing.T) {
	a := &Agent{}
	req := sip.NewRequest(sip.INVITE, sip.Uri{User: "echo", Host: "127.0.0.1"})
	var releases []func()
	for range 150 { // under the floor of 200 pending
		release, ok := a.admitInvite(req, nil)
		if !ok {
			t.Fatal("refused below the limit")
		}
		releases = append(releases, release)
	}
	if n := a.setups.perSecond(time.Now()); n != 0 {
		t.Fatalf("rate %d/s with nothing finished, want 0", n)
	}
	for _, release := range releases {
		release()
	}
	if n := a.setups.perSecond(time.Now()); n != 150 {
		t.Fatalf("rate %d/s after 150 finished, want 150", n)
	}
}
