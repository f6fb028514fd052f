package testharness

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

// handedOut are the pairs FreePortPair gave this process: never twice, so
// two ports asked for before either is bound cannot be the same.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePortPair returns an even port p in [lo, hi) such that p and p+1 are
// both free for UDP and TCP on 127.0.0.1 right now. Tests that start
// peers or server processes on fixed ports use it with a range below the
// kernel's ephemeral ports (32768 and up here), where the many outgoing
// connections and RTP sockets of a test run cannot take the port between
// the check and the peer's bind. A process never gets the same pair
// twice.
func FreePortPair(t testing.TB, lo, hi int) int {
	t.Helper()
	free := func(p int) bool {
		for _, port := range []int{p, p + 1} {
			u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				return false
			}
			l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			u.Close()
			if err != nil {
				return false
			}
			l.Close()
		}
		return true
	}
	n := (hi - lo) / 2
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for range 200 {
		if p := lo + 2*rand.IntN(n); !handedOut.ports[p] && free(p) {
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatalf("no free port pair in %d-%d", lo, hi-1)
	return 0
}
