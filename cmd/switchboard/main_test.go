package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/switchboard-voice/switchboard/sip"
)

func TestBannerReflectsConfiguration(t *testing.T) {
	sipAddr := netip.MustParseAddrPort("0.0.0.0:5060")
	tests := []struct {
		name      string
		info      bannerInfo
		want, not []string
	}{
		{
			name: "open demo",
			info: bannerInfo{SIP: sipAddr, HTTP: "[::]:8080"},
			want: []string{"TLS:  off", "no registration needed", "sip:ivr@127.0.0.1:5060", "ws://localhost:8080/sip"},
			not:  []string{"Users", "Trunks"},
		},
		{
			name: "users, trunks and TLS",
			info: bannerInfo{SIP: sipAddr, TLS: netip.MustParseAddrPort("0.0.0.0:5061"),
				Users:  sip.NewDirectory(sip.Account{Name: "bob", Password: "x"}, sip.Account{Name: "alice", Password: "y"}),
				Trunks: []sip.Trunk{{Name: "carrier", Host: "sip.example", Trusted: true}}},
			want: []string{"TLS:  0.0.0.0:5061", "Users (2): alice, bob", "Register a softphone", "Trunks: carrier (sip.example:5060, trusted)", "HTTP: off"},
			not:  []string{"no registration needed", "TLS:  off"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := banner(tt.info)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("banner lacks %q:\n%s", w, got)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("banner has %q:\n%s", n, got)
				}
			}
		})
	}
}

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

func TestSplitList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{{"", nil}, {"a", []string{"a"}}, {" a , b,,c ", []string{"a", "b", "c"}}, {",", nil}} {
		got := splitList(tc.in)
		if len(got) != len(tc.want) {
			t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
			}
		}
	}
}
