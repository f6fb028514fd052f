package sip

import (
	"net"
	"testing"
	"time"
)

// timedPair is a loopback UDP socket read through withReadDelay into d
// (c), and a socket that sends to it (tx); both close when the test ends.
func timedPair(t *testing.T, d *readDelay) (c net.PacketConn, tx *net.UDPConn) {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	c = withReadDelay(uc, d)
	if _, ok := c.(*timedConn); !ok {
		t.Fatal("receive timestamps not turned on")
	}
	tx, err = net.DialUDP("udp", nil, uc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return c, tx
}

// awaitKernelTimestamps waits until the kernel stamps datagrams as they
// arrive. Turning SO_TIMESTAMPNS on enables stamping system-wide through
// deferred work; until it has run, a datagram is stamped when it is
// read, and its wait reads as zero. (A server is up long before that
// matters; a test sends right away.) Each probe waits 20 ms in the queue
// and is read through timedConn, as the read loop reads.
func awaitKernelTimestamps(t *testing.T) {
	t.Helper()
	var d readDelay
	c, tx := timedPair(t, &d)
	buf := make([]byte, 64)
	for range 100 {
		if _, err := tx.Write([]byte("probe")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		d.samples = 0 // a new window: winMin is this probe's wait
		if _, _, err := c.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		if d.samples == 1 && d.winMin >= int64(10*time.Millisecond) {
			return
		}
	}
	t.Fatal("the kernel never stamped a datagram on arrival")
}

// Datagrams left in a real socket's queue are read with the kernel's
// receive timestamps: their wait is measured, and a read right after a
// quiet spell ends it.
func TestReadDelayFromKernelTimestamps(t *testing.T) {
	var d readDelay
	c, tx := timedPair(t, &d)
	awaitKernelTimestamps(t)
	buf := make([]byte, 1500)
	read := func(want string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != want || from.String() != tx.LocalAddr().String() {
			t.Fatalf("read %q from %v, want %q from %v", buf[:n], from, want, tx.LocalAddr())
		}
	}
	for _, m := range []string{"a", "b"} {
		if _, err := tx.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(150 * time.Millisecond) // both wait in the queue
	read("a")
	time.Sleep(60 * time.Millisecond)
	read("b") // ends the window: both waited 150 ms or more
	if got := d.recent(time.Now()); got < 140*time.Millisecond || got > 2*time.Second {
		t.Fatalf("read delay %v after datagrams waited 150 ms", got)
	}
	time.Sleep(60 * time.Millisecond)
	if _, err := tx.Write([]byte("c")); err != nil {
		t.Fatal(err)
	}
	read("c") // no wait: the signal ends
	if got := d.recent(time.Now()); got > 20*time.Millisecond {
		t.Fatalf("read delay %v after a datagram read at once", got)
	}

	// A queue too small for what is sent: the kernel drops, and says so
	// with the first datagram queued after the drops.
	if err := c.(*timedConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := tx.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if d.dropped.Load() != 0 || d.dropAt.Load() != 0 {
		t.Fatal("drops seen before any were reported")
	}
	for range 200 { // what fitted
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := c.ReadFrom(buf); err != nil {
			break
		}
	}
	if _, err := tx.Write([]byte("d")); err != nil {
		t.Fatal(err)
	}
	read("d")
	if n := d.dropped.Load(); n == 0 || n > 200 || d.dropAt.Load() == 0 {
		t.Fatalf("%d drops reported after 200 datagrams into a 4 KB queue", n)
	}
}
