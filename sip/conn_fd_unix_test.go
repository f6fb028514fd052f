//go:build linux

package sip

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With few descriptors left, a flood of connections from another process
// takes at most the total cap: an INVITE over UDP still gets its RTP
// sockets and a 200, and the TCP listener still accepts afterwards.
// (Before the cap, the flood took every descriptor, sipgo's accept loop
// ended on EMFILE and calls got "503 no media ports".)
func TestDescriptorsLeftForCallsUnderConnectionFlood(t *testing.T) {
	if os.Getenv("SIP_TEST_FLOOD_ADDR") != "" {
		t.Skip("helper process")
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = uint64(len(entries)) + 160
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip("cannot lower RLIMIT_NOFILE:", err)
	}
	defer func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) }()

	invited := make(chan *Leg, 1)
	a, logs := startGuardedAgentWith(t, Config{OnInvite: func(l *Leg) { invited <- l }})
	maxTotal := a.guard.limits.MaxTotal
	t.Logf("descriptor limit %d (%d open at start): total connection cap %d", low.Cur, len(entries), maxTotal)

	// Another process opens 400 connections and holds them.
	child := exec.Command(os.Args[0], "-test.run=^TestHelperHoldConnections$")
	child.Env = append(os.Environ(), "SIP_TEST_FLOOD_ADDR="+a.TCPAddr().String(), "SIP_TEST_FLOOD_N=400")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = child.Process.Kill(); _ = child.Wait() }()
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	t.Logf("flood: %s", strings.TrimSpace(line))
	waitUntil(t, 5*time.Second, func() bool { return a.guard.open() == maxTotal }, "the cap to fill")
	time.Sleep(200 * time.Millisecond)
	if n := a.guard.open(); n != maxTotal {
		t.Fatalf("%d connections held, cap %d", n, maxTotal)
	}

	// A call over UDP still gets its RTP sockets.
	rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtp.Close()
	sig, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sig.Close()
	local := sig.LocalAddr().String()
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n", rtp.LocalAddr().(*net.UDPAddr).Port)
	invite := "INVITE sip:tone@" + a.Addr().String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bKfd1\r\n" +
		"From: <sip:t@guest.invalid>;tag=fd1\r\nTo: <sip:tone@" + a.Addr().String() + ">\r\nCall-ID: fd1\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:t@" + local + ">\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	if _, err := sig.WriteToUDP([]byte(invite), net.UDPAddrFromAddrPort(a.Addr())); err != nil {
		t.Fatal(err)
	}
	var leg *Leg
	select {
	case leg = <-invited:
	case <-time.After(5 * time.Second):
		buf := make([]byte, 2000)
		_ = sig.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, _ := sig.ReadFromUDP(buf)
		t.Fatalf("the INVITE did not become a call under the flood; got %q", buf[:n])
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = leg.Answer(ctx)
	}()
	buf := make([]byte, 4000)
	for end := time.Now().Add(5 * time.Second); ; {
		if time.Now().After(end) {
			t.Fatal("no 200 OK for the call")
		}
		_ = sig.SetReadDeadline(end)
		n, _, err := sig.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("no 200 OK for the call: %v", err)
		}
		if strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			break
		}
	}
	leg.end(ErrRemoteHangup) // the test's raw socket will not answer a BYE

	// The flood ends; the TCP listener still serves.
	stdin.Close()
	_ = child.Wait()
	waitUntil(t, 5*time.Second, func() bool { return a.guard.open() == 0 }, "the flood's connections released")
	c, err := net.Dial("tcp", a.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, optionsRequest("after-fd-flood", "TCP", 0, "")); err != nil {
		t.Fatal(err)
	}
	if code := readStatus(t, c, bufio.NewReader(c)); code != 200 {
		t.Fatalf("OPTIONS after the flood: %d", code)
	}
	if n, _, _ := logs.stats(); n > 100 {
		t.Errorf("%d log lines for the flood", n)
	}
}

// TestHelperHoldConnections is the flooding process of the test above.
func TestHelperHoldConnections(t *testing.T) {
	addr := os.Getenv("SIP_TEST_FLOOD_ADDR")
	if addr == "" {
		t.Skip("helper process only")
	}
	n, _ := strconv.Atoi(os.Getenv("SIP_TEST_FLOOD_N"))
	var conns []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	fmt.Printf("%d connections opened\n", len(conns))
	// Hold them until the parent closes stdin (or 30 s).
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	for _, c := range conns {
		c.Close()
	}
}
