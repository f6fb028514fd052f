package testharness

import (
	"net"
	"testing"
	"time"
)

func TestProcNetHasPort(t *testing.T) {
	table := []byte(`   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
  124: 00000000:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0
`)
	for _, tc := range []struct {
		port int
		want bool
	}{{5060, true}, {8080, true}, {5061, false}, {0, false}} {
		if got := procNetHasPort(table, tc.port); got != tc.want {
			t.Errorf("port %d: %v, want %v", tc.port, got, tc.want)
		}
	}
	if procNetHasPort([]byte("header only\n"), 5060) || procNetHasPort(nil, 5060) {
		t.Error("empty table has a port")
	}
}

func TestWaitUDPBoundSeesABoundSocket(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	if bound, err := udpPortBound(port); err != nil || !bound {
		t.Fatalf("bound %v, err %v for a socket this test holds", bound, err)
	}
	WaitUDPBound(t, port, time.Second)
}
