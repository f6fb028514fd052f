package sip

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// The read delay is the least wait of a window's datagrams and the read
// after it: a window in which every datagram waited counts, one datagram
// that did not ends the signal, and with nothing read for two windows it
// is zero.
func TestReadDelayWindow(t *testing.T) {
	defer func() {
		// shedding: the delay counts only within readDropMemory of a drop.
		var d readDelay
		now := time.Now()
		d.last.Store(int64(time.Second))
		d.lastAt.Store(now.UnixNano())
		if d.shedding(now, 50*time.Millisecond) {
			t.Error("shedding with no drop seen")
		}
		d.observeDrops(now.UnixNano(), 3)
		if !d.shedding(now, 50*time.Millisecond) || d.dropped.Load() != 3 {
			t.Errorf("a drop: shedding %v, dropped %d; want true, 3", d.shedding(now, 50*time.Millisecond), d.dropped.Load())
		}
		if d.shedding(now, 2*time.Second) {
			t.Error("shedding below the limit")
		}
		if later := now.Add(readDropMemory); d.shedding(later, 50*time.Millisecond) {
			t.Error("shedding readDropMemory after the last drop")
		}
		d.observeDrops(now.UnixNano(), 2) // the count wrapped: 2^32 - 1 more
		if d.dropped.Load() != 3+(1<<32-1) {
			t.Errorf("dropped %d after the count wrapped", d.dropped.Load())
		}
	}()
	var d readDelay
	ms := int64(time.Millisecond)
	base := time.Now().UnixNano()
	at := func(off int64) time.Time { return time.Unix(0, base+off) }
	d.observe(base, 120*ms)
	d.observe(base+10*ms, 90*ms)
	if got := d.recent(at(10 * ms)); got != 0 {
		t.Fatalf("before a window has ended: %v, want 0", got)
	}
	d.observe(base+60*ms, 200*ms) // ends the window: least of 120, 90, 200
	if got := d.recent(at(60 * ms)); got != 90*time.Millisecond {
		t.Fatalf("after a window of waits: %v, want 90ms", got)
	}
	d.observe(base+115*ms, 0) // no wait: the signal ends with this window
	if got := d.recent(at(115 * ms)); got != 0 {
		t.Fatalf("after a read without a wait: %v, want 0", got)
	}
	d.observe(base+170*ms, 80*ms)
	d.observe(base+230*ms, 90*ms)
	if got := d.recent(at(230 * ms)); got != 80*time.Millisecond {
		t.Fatalf("%v, want 80ms", got)
	}
	if got := d.recent(at(231*ms + 2*int64(readDelayWindow))); got != 0 {
		t.Fatalf("two windows after the last read: %v, want 0", got)
	}
	d.observe(base+500*ms, -5*ms) // the clock stepped back
	d.observe(base+560*ms, 10*ms)
	if got := d.recent(at(560 * ms)); got != 0 {
		t.Fatalf("negative wait: %v, want 0", got)
	}
}

// The read delay refuses INVITEs only while the kernel is dropping
// datagrams: a reader behind by more than MaxReadDelay with nothing lost
// lets INVITEs through (near capacity that is normal); after a drop the
// same delay refuses them with a stateless 503 before parsing; once the
// loop keeps up, the next INVITE reaches the application. The read loop
// is slowed down by the test, and the drop is the test's (the kernel's
// drop report is read in TestReadDelayFromKernelTimestamps).
func TestEarlyShedOnReadDelay(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("receive timestamps are read on Linux only")
	}
	a, p, invited := newShedAgent(t, OverloadOptions{MaxPendingInvites: -1, MaxSchedLatency: -1, MaxReadDelay: 30 * time.Millisecond})
	awaitKernelTimestamps(t) // the agent's socket keeps stamping on
	waitInvited := func(n int32, why string) {
		t.Helper()
		for end := time.Now().Add(3 * time.Second); invited.Load() < n && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		if invited.Load() != n {
			t.Fatalf("%s: %d calls reached the application, want %d", why, invited.Load(), n)
		}
	}
	slow := func() { time.Sleep(60 * time.Millisecond) }
	behind := func(callID string) {
		a.readDelay.testHookRead.Store(&slow)
		p.send("\r\n\r\n") // wakes the loop: the reads after it are slow
		for range 3 {
			p.send("\r\n\r\n")
		}
		p.send(p.invite(callID)) // read about 240 ms after it was sent
	}

	behind("delay-0")
	waitInvited(1, "INVITE behind a slow read loop, nothing dropped")
	if d := a.ReadDelay(); d < 30*time.Millisecond {
		t.Errorf("ReadDelay %v behind a slow read loop, want above 30ms", d)
	}

	a.readDelay.dropAt.Store(time.Now().UnixNano())
	behind("delay-1")
	res := p.next("delay-1", 3*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 503 ") {
		t.Fatalf("INVITE behind a slow read loop that drops: want a 503, got %q", res)
	}
	a.readDelay.testHookRead.Store(nil)
	time.Sleep(150 * time.Millisecond)
	p.send(p.invite("delay-2"))
	waitInvited(2, "INVITE after the loop caught up")
}
