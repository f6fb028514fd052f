package dsp

import (
	"testing"
)

// dtmfBlocks is digit's two tones for n blocks of DTMFBlock samples.
func dtmfBlocks(t *testing.T, digit rune, n int) []int16 {
	t.Helper()
	row, col, ok := DTMFFrequencies(digit)
	if !ok {
		t.Fatalf("no frequencies for %q", digit)
	}
	a, b := Sine(8000, row, 7000, n*DTMFBlock, 0), Sine(8000, col, 7000, n*DTMFBlock, 0)
	for i := range a {
		a[i] = Clip16(float64(a[i]) + float64(b[i]))
	}
	return a
}

// Every key is reported once per press, after DTMFConfirm; a lone tone,
// silence and a block of the wrong size are not keys.
func TestDTMFDetectorDetect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input func(t *testing.T) []int16
		want  string
	}{
		{"every key, 100 ms each with 100 ms gaps", func(t *testing.T) []int16 {
			var s []int16
			for _, d := range "0123456789*#ABCD" {
				s = append(s, dtmfBlocks(t, d, 5)...)
				s = append(s, make([]int16, 5*DTMFBlock)...)
			}
			return s
		}, "0123456789*#ABCD"},
		{"a held key is one digit", func(t *testing.T) []int16 { return dtmfBlocks(t, '5', 50) }, "5"},
		{"lower-case letters", func(t *testing.T) []int16 { return dtmfBlocks(t, 'a', 3) }, "A"},
		{"one block is too short", func(t *testing.T) []int16 { return dtmfBlocks(t, '1', 1) }, ""},
		{"single tone", func(t *testing.T) []int16 { return Sine(8000, 770, 7000, 20*DTMFBlock, 0) }, ""},
		{"silence", func(t *testing.T) []int16 { return make([]int16, 20*DTMFBlock) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d DTMFDetector
			var got []rune
			s := tc.input(t)
			for off := 0; off+DTMFBlock <= len(s); off += DTMFBlock {
				if k, ok := d.Detect(s[off : off+DTMFBlock]); ok {
					got = append(got, k)
				}
			}
			if string(got) != tc.want {
				t.Fatalf("detected %q, want %q", string(got), tc.want)
			}
		})
	}
	var d DTMFDetector
	s := dtmfBlocks(t, '7', 4)
	for range 4 {
		if _, ok := d.Detect(s[:DTMFBlock+1]); ok {
			t.Fatal("a block of the wrong size was analysed")
		}
	}
	if DTMFConfirm.Milliseconds() != 40 {
		t.Fatalf("DTMFConfirm %v, want 40 ms", DTMFConfirm)
	}
}
