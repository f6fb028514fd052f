package transport

import (
	"testing"
)

func TestIsRTCP(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{[]byte{0x80, 200}, true},   // SR
		{[]byte{0x81, 201}, true},   // RR
		{[]byte{0x80, 206}, true},   // PSFB
		{[]byte{0x80, 0x00}, false}, // RTP PCMU
		{[]byte{0x80, 0x80}, false}, // RTP PCMU, marker
		{[]byte{0x80, 101}, false},  // telephone-event
		{[]byte{0x80, 0xe5}, false}, // PT 101 with marker (229)
		{[]byte{0x40, 200}, false},  // version 1
		{[]byte{0x80}, false},
	} {
		if got := IsRTCP(c.b); got != c.want {
			t.Errorf("IsRTCP(% x) = %v", c.b, got)
		}
	}
}
