package cluster

import (
	"net/netip"
	"testing"
)

func TestMemberSource(t *testing.T) {
	members := []Member{
		{Addr: "10.0.0.1:7000", SIP: "10.0.0.1:5060"},
		{Addr: "10.0.0.2:7000", SIP: "[2001:db8::2]:5060"},
		{Addr: "10.0.0.3:7000", SIP: "localhost:5060"},
		{Addr: "10.0.0.4:7000", Self: true}, // not announced
		{Addr: "10.0.0.5:7000", SIP: "garbage"},
	}
	for _, tc := range []struct {
		ip   string
		want bool
	}{
		{"10.0.0.1", true},
		{"::ffff:10.0.0.1", true}, // v4-mapped source
		{"2001:db8::2", true},
		{"127.0.0.1", true}, // localhost, looked up
		{"10.0.0.4", false}, // a member's cluster address is not its SIP address
		{"10.0.0.9", false},
		{"", false}, // unknown source (not SIP)
	} {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		if got := memberSource(members, ip); got != tc.want {
			t.Errorf("memberSource(%q) = %v, want %v", tc.ip, got, tc.want)
		}
	}
}
