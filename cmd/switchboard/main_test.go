package main

import "testing"

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512MiB", 512 << 20, true},
		{"2GiB", 2 << 30, true},
		{"1.5G", 3 << 29, true},
		{"100MB", 100e6, true},
		{"64k", 0, false},
		{"64K", 64 << 10, true},
		{"1000000", 1000000, true},
		{"10B", 10, true},
		{"", 0, false},
		{"-1GiB", 0, false},
		{"0", 0, false},
		{"lots", 0, false},
		{"1e30TiB", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
