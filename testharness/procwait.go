package testharness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitUDPBound waits, for up to within, until some process has a UDP
// socket bound to port (IPv4 or IPv6, any address), as the kernel lists
// in /proc/net/udp. Tests that start a peer process (SIPp, a server
// binary) use it instead of a fixed sleep: it neither races with the
// peer's bind (nothing is bound to probe) nor waits longer than needed.
// Off Linux it sleeps 300 ms.
func WaitUDPBound(t testing.TB, port int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		bound, err := udpPortBound(port)
		if err != nil {
			time.Sleep(300 * time.Millisecond)
			return
		}
		if bound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing bound UDP port %d within %s", port, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// udpPortBound reports whether /proc/net/udp or /proc/net/udp6 lists a
// socket whose local port is port.
func udpPortBound(port int) (bool, error) {
	var read bool
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		read = true
		if procNetHasPort(data, port) {
			return true, nil
		}
	}
	if !read {
		return false, fmt.Errorf("no /proc/net/udp")
	}
	return false, nil
}

// procNetHasPort scans a /proc/net/{udp,tcp}[6] table: after a header
// line, each row's second field is the local "ADDR:PORT" in hex.
func procNetHasPort(table []byte, port int) bool {
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		if i < 0 {
			continue
		}
		if p, err := strconv.ParseUint(f[1][i+1:], 16, 16); err == nil && int(p) == port {
			return true
		}
	}
	return false
}

// LockedBuffer is a bytes.Buffer safe to write from a child process's
// output copier while the test reads it (on failure, say).
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *LockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// String returns what was written so far.
func (b *LockedBuffer) String() string { return string(b.Bytes()) }
