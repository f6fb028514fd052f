package sip

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFileUsersAndTrunks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchboard.toml")
	body := `[[users]]
name = "alice"
password = "pw"

[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = 5080
username = "u"
password = "p"
caller_id = "15550001111"
dids = ["+15557654321"]
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := LoadDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	if pw, ok := dir.Password("alice"); !ok || pw != "pw" {
		t.Fatalf("alice: %q %v", pw, ok)
	}
	trunks, err := LoadTrunks(path)
	if err != nil || len(trunks) != 1 || trunks[0].Addr() != "127.0.0.1:5080" || trunks[0].URI("+49301") != "sip:+49301@127.0.0.1:5080" {
		t.Fatalf("trunks %+v %v", trunks, err)
	}
	if err := os.WriteFile(path, []byte(body+"\n[[users]]\nname = \"bob\"\npasword = \"typo\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDirectory(path); err == nil || !strings.Contains(err.Error(), "pasword") {
		t.Fatalf("typo not reported: %v", err)
	}
}

// The local address advertised to a peer comes from the route cache
// while it is fresh; stale or unknown peers are looked up again, and a
// full cache starts over.
func TestRouteCache(t *testing.T) {
	var r routeCache
	now := time.Unix(1000, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	local := netip.MustParseAddr("10.0.0.5")
	r.put(a, local, now)
	for _, tc := range []struct {
		name   string
		remote netip.Addr
		at     time.Time
		want   netip.Addr
		ok     bool
	}{
		{"fresh", a, now.Add(routeTTL - time.Second), local, true},
		{"stale", a, now.Add(routeTTL), netip.Addr{}, false},
		{"unknown", b, now, netip.Addr{}, false},
	} {
		if got, ok := r.get(tc.remote, tc.at); got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
	for i := range routeCacheMax {
		r.put(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), local, now)
	}
	if n := len(r.m); n > routeCacheMax {
		t.Fatalf("cache holds %d routes, bound %d", n, routeCacheMax)
	}
}
