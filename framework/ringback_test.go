package framework

import (
	"math"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// Each country's ringback has its frequencies and its cadence: the first
// bursts and gaps last what the table (ITU-T E.180) says, and the pattern
// repeats.
func TestRingbackCadences(t *testing.T) {
	tests := []struct {
		country string
		freqs   []float64
		pattern []time.Duration // the first on/off periods
	}{
		{"us", []float64{440, 480}, []time.Duration{2 * time.Second, 4 * time.Second, 2 * time.Second}},
		{"", []float64{440, 480}, []time.Duration{2 * time.Second, 4 * time.Second}},
		{"UK", []float64{400, 450}, []time.Duration{400 * ms, 200 * ms, 400 * ms, 2000 * ms, 400 * ms, 200 * ms}},
		{"gb", []float64{400, 450}, []time.Duration{400 * ms, 200 * ms, 400 * ms, 2000 * ms}},
		{"de", []float64{425}, []time.Duration{time.Second, 4 * time.Second, time.Second}},
		{"fr", []float64{440}, []time.Duration{1500 * ms, 3500 * ms, 1500 * ms}},
		{"jp", []float64{400}, []time.Duration{time.Second, 2 * time.Second, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.country, func(t *testing.T) {
			src, err := Ringback(tt.country)
			if err != nil {
				t.Fatal(err)
			}
			// Run lengths of tone and silence, frame by frame.
			f := media.NewFrame(8000)
			var runs []time.Duration
			var first []int16
			on := true
			var run time.Duration
			for i := 0; i < 700; i++ { // 14 s
				if err := src.ReadFrame(f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				loud := dsp.RMS(f.Samples) > 1000
				if i == 0 && !loud {
					t.Fatal("ringback starts with silence")
				}
				if loud && len(first) < 1600 {
					first = append(first, f.Samples...)
				}
				if loud != on {
					runs = append(runs, run)
					on, run = loud, 0
				}
				run += 20 * time.Millisecond
			}
			if len(runs) < len(tt.pattern) {
				t.Fatalf("cadence %v, want at least %v", runs, tt.pattern)
			}
			for i, want := range tt.pattern {
				if runs[i] != want {
					t.Fatalf("cadence %v, want it to start %v", runs, tt.pattern)
				}
			}
			freq, _ := dsp.DominantFrequency(first, 8000, 300, 600, 5)
			ok := false
			for _, w := range tt.freqs {
				ok = ok || math.Abs(freq-w) <= 5
			}
			if !ok {
				t.Fatalf("dominant frequency %.0f Hz, want one of %v", freq, tt.freqs)
			}
		})
	}
	if _, err := Ringback("xx"); err == nil {
		t.Fatal("Ringback accepted country xx")
	}
}
