package dsp

import (
	"testing"
	"time"
)

// Analyze reports speech after the onset and silence after the hangover,
// with the stream times of both.
func TestVADAnalyze(t *testing.T) {
	v := NewVAD(VADOptions{})
	quiet := make([]int16, 160)
	for i := range quiet {
		quiet[i] = int16(i%7) - 3 // a faint noise floor
	}
	loud := Sine(8000, 300, 6000, 160, 0)
	var evs []VADEvent
	feed := func(s []int16, n int) {
		for range n {
			if ev, ok := v.Analyze(s); ok {
				evs = append(evs, ev)
			}
		}
	}
	feed(quiet, 25) // 0–500 ms
	feed(loud, 25)  // 500–1000 ms
	feed(quiet, 25) // 1000–1500 ms
	if len(evs) != 2 || !evs[0].Speaking || evs[1].Speaking {
		t.Fatalf("events %+v, want speaking then silent", evs)
	}
	if evs[0].At != 500*time.Millisecond || evs[1].At != time.Second || evs[1].Duration != 500*time.Millisecond {
		t.Fatalf("events %+v, want speech from 500 ms to 1 s", evs)
	}
	if v.Speaking() {
		t.Fatal("still speaking after the hangover")
	}
	if _, ok := v.Analyze(nil); ok {
		t.Fatal("an empty frame changed the state")
	}
}
