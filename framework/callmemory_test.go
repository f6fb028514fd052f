package framework

import (
	"bytes"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// An ended call leaves (almost) nothing behind: before, its INVITE and
// BYE server transactions stayed whole for 32 s (Timers L and J, ~11.7
// KB a call), which at 2,000 calls/s was most of the server's memory.
// The retransmission memory that replaces them keeps ~10 bytes a call.
func TestEndedCallsLeaveNoTransactions(t *testing.T) {
	srv := benchServer(t, 48000, 49599, *benchKeep)
	addr := "127.0.0.1:" + strconv.Itoa(int(srv.SIPAddr().Port()))
	rtp := rtpSink(t)
	runCalls(t, srv, addr, rtp, 100) // pools and maps grown
	base := liveHeap()
	const n = 600
	runCalls(t, srv, addr, rtp, n)
	live := liveHeap()
	per := (int64(live) - int64(base)) / n
	t.Logf("live heap+stacks per ended call: %d B (baseline %d B)", per, base)
	if per > 2048 {
		t.Fatalf("%d ended calls hold %d B each, want under 2 KB: something outlives the call", n, per)
	}
}

// After a call has ended a retransmitted BYE still gets its 200, and a
// late retransmission of the answered INVITE is absorbed: no response,
// no new call (RFC 6026 7.1), although neither transaction exists any
// more.
func TestRetransmissionsAfterCallEnded(t *testing.T) {
	srv := benchServer(t, 49600, 49999, *benchKeep)
	addr := "127.0.0.1:" + strconv.Itoa(int(srv.SIPAddr().Port()))
	c, err := newBenchCaller(addr, rtpSink(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	d, err := c.setup()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.end(d); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, srv)
	bye := bytes.Clone(c.msg.Bytes())
	c.request("INVITE", 1, &benchDialog{callID: d.callID, fromTag: d.fromTag}, d.callID+"-i", fmt.Sprintf(benchSDP, c.rtp))
	invite := bytes.Clone(c.msg.Bytes())

	// The BYE again: the same 200.
	if _, err := c.conn.WriteToUDP(bye, c.to); err != nil {
		t.Fatal(err)
	}
	status, cseq := c.readResponse(t, d.callID, 2*time.Second)
	if status != 200 || cseq != "2 BYE" {
		t.Fatalf("retransmitted BYE answered %d (CSeq %q), want 200 (CSeq 2 BYE)", status, cseq)
	}
	// The INVITE again: nothing.
	if _, err := c.conn.WriteToUDP(invite, c.to); err != nil {
		t.Fatal(err)
	}
	if status, cseq := c.readResponse(t, d.callID, time.Second); status != 0 {
		t.Fatalf("late INVITE retransmission answered %d (CSeq %q), want it absorbed", status, cseq)
	}
	if n := srv.ActiveCalls(); n != 0 {
		t.Fatalf("late INVITE retransmission started %d calls", n)
	}
}

// readResponse returns the status and CSeq of the next response for
// callID within wait, or 0 if none came.
func (c *benchCaller) readResponse(t *testing.T, callID string, wait time.Duration) (int, string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		n, err := c.conn.Read(c.buf)
		if err != nil {
			return 0, ""
		}
		msg := c.buf[:n]
		if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || len(msg) < 12 || !bytes.Equal(header(msg, "Call-ID"), []byte(callID)) {
			continue
		}
		code, err := strconv.Atoi(string(msg[8:11]))
		if err != nil {
			t.Fatalf("bad status line %q", msg[:12])
		}
		return code, string(header(msg, "CSeq"))
	}
}
