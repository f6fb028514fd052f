package media

import (
	"testing"
	"time"
)

// A simulated link (seeded, deterministic): 20 ms packets with loss,
// reordering, duplicates and jitter; the RFC 3550 counters must report the
// loss and jitter the link applied.
func TestRecvStatsOnSimulatedLink(t *testing.T) {
	const n = 5000
	start := time.Unix(1000, 0)
	// Uniform 0-30 ms delay (mean 15 ms, σ = 30/√12 ms), 1 % duplicates.
	link := simLink{Seed: 42, Loss: 0.05, Delay: 15 * time.Millisecond, Jitter: 8660 * time.Microsecond, Uniform: true, Duplicate: 0.01}
	run := link.run(n, start, 65000, 0, 160)
	lost := run.lostCount()
	pkts := run.Packets
	var s recvStats
	for _, p := range pkts {
		s.update(7, p.Seq, p.TS, p.Arrival, 8000)
	}
	expected, gotLost, jitter := s.snapshot()
	if expected != n && expected != n-1 { // the very last packet may be the lost one
		t.Fatalf("expected %d, want %d (sequence wrapped at 65535)", expected, n)
	}
	// Duplicates are recognised (not counted as received), so the count
	// matches what the link dropped.
	if d := float64(int(gotLost)-lost) / float64(lost); d < -0.1 || d > 0.1 {
		t.Fatalf("lost %d, link dropped %d", gotLost, lost)
	}
	// Uniform 0-30 ms delay: mean |D| between consecutive packets is 10 ms.
	if jitter < 8*time.Millisecond || jitter > 12*time.Millisecond {
		t.Fatalf("jitter %s, want ~10 ms", jitter)
	}
	t.Logf("expected %d, lost %d (link %d), jitter %s", expected, gotLost, lost, jitter)
	// A new SSRC starts over.
	s.update(8, 10, 0, start, 8000)
	if e, l, _ := s.snapshot(); e != 1 || l != 0 {
		t.Fatalf("after SSRC change: expected %d lost %d", e, l)
	}
}

// The jitter estimate is right at today's wall-clock times and across a
// timestamp wrap, at 8 and 48 kHz.
func TestRecvStatsJitterNow(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, rate := range []int{8000, 48000} {
		var s recvStats
		step := uint32(rate / 50)
		for i := range 2000 {
			// Alternately 0 and 10 ms late: |D| is 10 ms every packet.
			late := time.Duration(i%2) * 10 * time.Millisecond
			s.update(1, uint16(i), 0xffff0000+uint32(i)*step, start.Add(time.Duration(i)*20*time.Millisecond+late), rate)
		}
		if _, _, j := s.snapshot(); j < 9500*time.Microsecond || j > 10500*time.Microsecond {
			t.Fatalf("%d Hz: jitter %s, want 10 ms", rate, j)
		}
	}
}

// BenchmarkRecvStatsUpdate is the per-packet cost of the receive
// statistics on the reader goroutine: one in-order 20 ms packet.
func BenchmarkRecvStatsUpdate(b *testing.B) {
	var s recvStats
	now := time.Unix(1000, 0)
	var seq uint16
	var ts uint32
	for b.Loop() {
		seq++
		ts += 160
		now = now.Add(20 * time.Millisecond)
		s.update(7, seq, ts, now, 8000)
	}
	if e, _, _ := s.snapshot(); e == 0 {
		b.Fatal("nothing recorded")
	}
}

// Stats may be read while the reader goroutine updates: every snapshot is
// a consistent pair of counts (run with -race).
func TestRecvStatsSnapshotWhileUpdating(t *testing.T) {
	const n = 20000
	var s recvStats
	done := make(chan struct{})
	go func() {
		defer close(done)
		now := time.Unix(1000, 0)
		for i := range n {
			if i%10 == 3 {
				continue // 10 % loss, so lost grows with expected
			}
			s.update(9, uint16(i), uint32(i*160), now.Add(time.Duration(i)*20*time.Millisecond), 8000)
		}
	}()
	var lastExpected uint64
	for reads := 0; reads < 1_000_000; reads++ {
		select {
		case <-done:
			reads = 1_000_000
		default:
		}
		e, l, _ := s.snapshot()
		if e < lastExpected || l > e || (e > 20 && (l < e/10-2 || l > e/10+2)) {
			t.Fatalf("inconsistent snapshot: expected %d (before %d), lost %d", e, lastExpected, l)
		}
		lastExpected = e
	}
	<-done
	if e, l, j := s.snapshot(); e != n || l != n/10 || j != 0 {
		t.Fatalf("final: expected %d lost %d jitter %s; want %d, %d, 0", e, l, j, n, n/10)
	}
}
