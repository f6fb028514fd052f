//go:build unix

package bridge

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// 1,000 sockets that never say hello are all closed by the hello
// deadline; the bridge still serves a new client afterwards.
func TestSilentSocketsClosed(t *testing.T) {
	n := 1000
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 4096 {
		lim.Cur = min(lim.Max, 4096) // both ends of every socket live in this process
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		if lim.Cur < 2*uint64(n)+200 {
			n = int(lim.Cur-200) / 2
		}
	}
	b, tok, url := testBridge(t)
	var conns []net.Conn
	for range n {
		conns = append(conns, dial(t, url, ""))
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		n := len(b.sessions)
		b.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.mu.Lock()
	left := len(b.sessions)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d of %d silent sockets still open after the hello timeout", left, n)
	}
	c := dial(t, url, "")
	send(t, c, Message{Type: "hello", Token: tok.MintFor("bob", time.Hour)})
	if m, _ := next(t, c); m.Type != "welcome" {
		t.Fatalf("a new client after the flood: %+v", m)
	}
	for _, c := range conns {
		c.Close()
	}
}
