package sip

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// logThrottle lets a flood of identical warnings (a fuzzer or a broken
// peer sending malformed packets) through at a bounded rate: at most
// burst lines per interval, then one line saying how many were held back.
type logThrottle struct {
	mu         sync.Mutex
	interval   time.Duration
	burst      int
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one that was let through.
func (t *logThrottle) allow(now time.Time) (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.start) >= t.interval {
		t.start, t.n = now, 0
	}
	if t.n >= t.burst {
		t.suppressed++
		return false, 0
	}
	t.n++
	s := t.suppressed
	t.suppressed = 0
	return true, s
}

// dnsCache remembers what trunk host names resolve to, so recognising a
// trunk's INVITE does not cost a DNS lookup per call. Entries live for
// ttl (failures for ttl/6, so a fixed DNS is noticed soon).
type dnsCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	entries map[string]dnsEntry
	lookup  func(ctx context.Context, host string) ([]netip.Addr, error)
}

type dnsEntry struct {
	ips     []netip.Addr
	expires time.Time
}

func newDNSCache(ttl time.Duration) *dnsCache {
	return &dnsCache{ttl: ttl, entries: map[string]dnsEntry{}, lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
}

func (c *dnsCache) resolve(host string) []netip.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[host]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.ips
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := c.lookup(ctx, host)
	ttl := c.ttl
	if err != nil {
		ips, ttl = nil, c.ttl/6
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	c.mu.Lock()
	c.entries[host] = dnsEntry{ips: ips, expires: now.Add(ttl)}
	c.mu.Unlock()
	return ips
}
