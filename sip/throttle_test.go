package sip

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestLogThrottle(t *testing.T) {
	th := logThrottle{interval: time.Second, burst: 3}
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, held := th.allow(now); !ok || held != 0 {
			t.Fatalf("line %d: allow=%v held=%d", i, ok, held)
		}
	}
	for range 5 {
		if ok, _ := th.allow(now.Add(500 * time.Millisecond)); ok {
			t.Fatal("a line over the burst was let through")
		}
	}
	if ok, held := th.allow(now.Add(time.Second)); !ok || held != 5 {
		t.Fatalf("next interval: allow=%v held=%d, want true 5", ok, held)
	}
}

func TestDNSCacheResolvesOncePerTTL(t *testing.T) {
	c := newDNSCache(time.Minute)
	calls := 0
	c.lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
		calls++
		if host == "bad.example" {
			return nil, errors.New("no such host")
		}
		return []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.7")}, nil
	}
	for range 5 {
		ips := c.resolve("carrier.example")
		if len(ips) != 1 || ips[0] != netip.MustParseAddr("192.0.2.7") {
			t.Fatalf("resolve: %v", ips)
		}
	}
	if calls != 1 {
		t.Fatalf("%d lookups for 5 resolves within the TTL", calls)
	}
	if ips := c.resolve("198.51.100.1"); len(ips) != 1 || calls != 1 {
		t.Fatalf("an IP literal was looked up (%v, %d calls)", ips, calls)
	}
	c.resolve("bad.example")
	c.resolve("bad.example")
	if calls != 2 {
		t.Fatalf("a failed lookup was not cached: %d calls", calls)
	}
}
