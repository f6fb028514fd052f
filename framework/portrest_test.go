package framework

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Config.RTPPortRest is how long a released RTP port pair stays out of
// use; zero keeps the pool's 2 s.
func TestRTPPortRest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rest   time.Duration
		reused bool // taken again 300 ms after its release
	}{
		{"default 2 s", 0, false},
		{"100 ms", 100 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := testharness.FreePortPair(t, 30000, 31998) // a pool of one pair
			s, err := NewServer(Config{HTTPAddr: "-", RTPPortMin: port, RTPPortMax: port + 1, RTPPortRest: tc.rest},
				HandlerFunc(func(context.Context, *Call) error { return nil }))
			if err != nil {
				t.Fatal(err)
			}
			lo := netip.MustParseAddr("127.0.0.1")
			take := func() (int, error) {
				rtp, rtcp, p, err := s.ports.ListenPair(lo)
				if err == nil {
					rtp.Close()
					rtcp.Close()
				}
				return p, err
			}
			p, err := take()
			if err != nil {
				t.Fatalf("the pool's only pair %d-%d: %v", port, port+1, err)
			}
			s.ports.Release(p)
			if _, err := take(); !errors.Is(err, transport.ErrNoPorts) {
				t.Fatalf("a port pair released just now was handed out again (err %v)", err)
			}
			time.Sleep(300 * time.Millisecond)
			p, err = take()
			if reused := err == nil; reused != tc.reused {
				t.Fatalf("300 ms after its release the pair was reused: %v, want %v (err %v)", reused, tc.reused, err)
			}
			if err == nil {
				s.ports.Release(p)
			}
		})
	}
}
