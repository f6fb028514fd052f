package testharness

import (
	"math"
	"strings"
	"testing"
	"time"
)

// The loss models give the asked long-run rate and burst length, and the
// same seed the same fates.
func TestLinkDirLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		im    Impairment
		burst float64 // expected mean burst length
	}{
		{"random 5%", Impairment{Seed: 3, Loss: 0.05}, 1 / 0.95},
		{"bursty 5% x4", Impairment{Seed: 3, Loss: 0.05, BurstLen: 4}, 4},
		{"random 20%", Impairment{Seed: 9, Loss: 0.2}, 1 / 0.8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 200000
			fates := func() (string, LinkStats) {
				d := newLinkDir(tc.im, 1, func([]byte) {})
				var b strings.Builder
				now := time.Unix(0, 0)
				pkt := make([]byte, 172)
				for i := 0; i < n; i++ {
					lost := d.st.Lost
					d.arrive(pkt, now)
					if d.st.Lost > lost {
						b.WriteByte('x')
					} else {
						b.WriteByte('.')
					}
					d.q = d.q[:0] // nothing delivers here
				}
				return b.String(), d.stats()
			}
			f1, st := fates()
			f2, _ := fates()
			if f1 != f2 {
				t.Fatal("same seed, different fates")
			}
			rate := float64(st.Lost) / n
			if math.Abs(rate-tc.im.Loss) > tc.im.Loss*0.1 {
				t.Errorf("loss rate %.4f, want %.4f", rate, tc.im.Loss)
			}
			bursts := len(strings.FieldsFunc(f1, func(r rune) bool { return r == '.' }))
			mean := float64(st.Lost) / float64(bursts)
			if math.Abs(mean-tc.burst) > tc.burst*0.1 {
				t.Errorf("mean burst %.2f packets, want %.2f", mean, tc.burst)
			}
		})
	}
}

// Jitter, reordering, duplication and the bandwidth cap set delivery times
// as documented.
func TestLinkDirTiming(t *testing.T) {
	now := time.Unix(100, 0)
	pkt := make([]byte, 200)
	d := newLinkDir(Impairment{Seed: 1, Latency: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}, 1, nil)
	for i := 0; i < 1000; i++ {
		d.arrive(pkt, now)
	}
	var lo, hi time.Duration = time.Hour, 0
	for _, p := range d.q {
		lo, hi = min(lo, p.at.Sub(now)), max(hi, p.at.Sub(now))
	}
	if lo < 30*time.Millisecond || hi > 70*time.Millisecond || hi-lo < 35*time.Millisecond {
		t.Errorf("delays %s..%s, want within 30..70 ms and spread", lo, hi)
	}

	d = newLinkDir(Impairment{Seed: 1, Duplicate: 1}, 1, nil)
	d.arrive(pkt, now)
	if len(d.q) != 2 || d.stats().Duplicated != 1 {
		t.Errorf("duplicate: %d queued", len(d.q))
	}

	d = newLinkDir(Impairment{Seed: 1, Reorder: 1}, 1, nil)
	d.arrive(pkt, now)
	if len(d.q) != 1 || d.q[0].at.Sub(now) != 50*time.Millisecond {
		t.Errorf("reorder: held %s", d.q[0].at.Sub(now))
	}

	// 80 kbit/s: a 200-byte packet takes 20 ms; a burst queues up to
	// 200 ms and then drops.
	d = newLinkDir(Impairment{Seed: 1, BandwidthKbps: 80}, 1, nil)
	for i := 0; i < 20; i++ {
		d.arrive(pkt, now)
	}
	st := d.stats()
	if st.Overflow == 0 || st.Overflow > 10 {
		t.Errorf("bandwidth: %d of 20 dropped, want the tail beyond 200 ms", st.Overflow)
	}
	last := d.q[0].at
	for _, p := range d.q {
		if p.at.After(last) {
			last = p.at
		}
	}
	if got := last.Sub(now); got < 180*time.Millisecond || got > 220*time.Millisecond {
		t.Errorf("bandwidth: last packet out after %s, want ~200 ms", got)
	}
}

func TestImpairmentValidate(t *testing.T) {
	for _, im := range []Impairment{{Loss: -0.1}, {Loss: 1.1}, {Jitter: -1}, {Reorder: 2}, {Duplicate: -1}, {BandwidthKbps: -5}, {BurstLen: -1}} {
		if im.Validate() == nil {
			t.Errorf("%+v accepted", im)
		}
	}
	if (Impairment{Loss: 0.05, Jitter: 40 * time.Millisecond, Seed: 2}).String() != "loss 5% jitter 40ms seed 2" {
		t.Errorf("String: %q", Impairment{Loss: 0.05, Jitter: 40 * time.Millisecond, Seed: 2}.String())
	}
}
