package dsp

import (
	"math"
	"testing"
	"time"
)

// Expected values are worked out by hand from the formulas of ITU-T G.107
// (MOS from R, Ie,eff) and Cole & Rosenbluth (Id), e.g. 5 % random loss on
// G.711 with Bpl = 25.1: Ie,eff = 95·5/(5 + 25.1) = 15.781; with 40 ms
// one way Id = 0.96, so R = 93.2 − 0.96 − 15.781 = 76.459 and
// MOS = 1 + 0.035·76.459 + 76.459·16.459·23.541·7e-6 = 3.8835.
func TestEModel(t *testing.T) {
	for _, c := range []struct {
		name     string
		m        EModel
		wantR    float64
		wantMOS  float64
		tolerate float64
	}{
		{"G.711 no loss, no delay", EModel{Bpl: 25.1}, 93.2, 4.4093, 0.0005},
		{"G.711 no loss, 20 ms", EModel{Delay: 20 * time.Millisecond, Bpl: 25.1}, 92.72, 4.3998, 0.0005},
		{"G.711 1 % loss, 40 ms", EModel{Delay: 40 * time.Millisecond, LossPercent: 1, Bpl: 25.1}, 88.6002, 4.3032, 0.0005},
		{"G.711 2 % loss, 40 ms", EModel{Delay: 40 * time.Millisecond, LossPercent: 2, Bpl: 25.1}, 85.2289, 4.2053, 0.0005},
		{"G.711 5 % loss, 40 ms", EModel{Delay: 40 * time.Millisecond, LossPercent: 5, Bpl: 25.1}, 76.4593, 3.8835, 0.0005},
		{"G.711 no loss, 300 ms one way", EModel{Delay: 300 * time.Millisecond, Bpl: 25.1}, 72.503, 3.7121, 0.0005},
		{"G.711 no loss, 400 ms one way", EModel{Delay: 400 * time.Millisecond, Bpl: 25.1}, 59.103, 3.0534, 0.0005},
		// Bursty loss hurts more than random loss of the same rate:
		// BurstR 2 gives Ie,eff = 95·5/(2.5 + 25.1) = 17.210.
		{"G.711 5 % bursty loss", EModel{LossPercent: 5, BurstR: 2, Bpl: 25.1}, 75.9899, 3.8639, 0.0005},
		// Everything lost: R clamps at 0, MOS 1.
		{"all lost, 1 s", EModel{Delay: time.Second, LossPercent: 100, Bpl: 25.1}, 0, 1, 1e-9},
	} {
		t.Run(c.name, func(t *testing.T) {
			if r := c.m.R(); math.Abs(r-c.wantR) > 0.001 {
				t.Errorf("R = %.4f, want %.4f", r, c.wantR)
			}
			if m := c.m.MOS(); math.Abs(m-c.wantMOS) > c.tolerate {
				t.Errorf("MOS = %.4f, want %.4f", m, c.wantMOS)
			}
		})
	}
}

// G.107 Annex B's R to MOS mapping at its usual reference points.
func TestMOSFromR(t *testing.T) {
	for _, c := range []struct{ r, mos float64 }{
		{-5, 1}, {0, 1}, {50, 2.575}, {60, 3.1}, {70, 3.597}, {80, 4.024}, {90, 4.339}, {100, 4.5}, {120, 4.5},
	} {
		if got := MOSFromR(c.r); math.Abs(got-c.mos) > 0.0005 {
			t.Errorf("MOSFromR(%v) = %.4f, want %.3f", c.r, got, c.mos)
		}
	}
	if MOSFromR(math.NaN()) != 1 {
		t.Error("NaN")
	}
}
