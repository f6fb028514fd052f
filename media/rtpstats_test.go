package media

import (
	"math/rand"
	"testing"
	"time"
)

// A simulated link (seeded, deterministic): 20 ms packets with loss,
// reordering, duplicates and jitter; the RFC 3550 counters must report the
// loss and jitter the link applied.
func TestRecvStatsOnSimulatedLink(t *testing.T) {
	const n = 5000
	rng := rand.New(rand.NewSource(42))
	type pkt struct {
		seq     uint16
		ts      uint32
		arrival time.Time
	}
	start := time.Unix(1000, 0)
	var pkts []pkt
	lost := 0
	for i := range n {
		if rng.Float64() < 0.05 {
			lost++
			continue
		}
		delay := time.Duration(rng.Intn(30)) * time.Millisecond // 0-30 ms jitter
		p := pkt{seq: uint16(65000 + i), ts: uint32(i * 160), arrival: start.Add(time.Duration(i)*20*time.Millisecond + delay)}
		pkts = append(pkts, p)
		if rng.Float64() < 0.01 { // duplicate
			pkts = append(pkts, p)
		}
	}
	// Deliver in arrival order: the random delays reorder neighbours.
	for i := 1; i < len(pkts); i++ {
		for j := i; j > 0 && pkts[j].arrival.Before(pkts[j-1].arrival); j-- {
			pkts[j], pkts[j-1] = pkts[j-1], pkts[j]
		}
	}
	var s recvStats
	for _, p := range pkts {
		s.update(7, p.seq, p.ts, p.arrival, 8000)
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
