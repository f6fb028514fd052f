package framework

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A caller that hangs up the moment it has ACKed (the BYE right behind
// the ACK, over UDP) was still answered: every call's CDR has an answer
// time, at or after its start and not after its end. Before, the BYE
// often reached the leg before Answer had seen the ACK, and the CDR said
// unanswered.
func TestByeRightBehindAckIsAnswered(t *testing.T) {
	const calls = 60
	var mu sync.Mutex
	var cdrs []CDR
	h := HandlerFunc(func(ctx context.Context, c *Call) error { return c.Echo(ctx) })
	srv, err := NewServer(Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "-", RTPPortMin: 36000, RTPPortMax: 36199, RTPPortRest: 100 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1, GuestShare: -1},
		OnCallEnd:  func(c CDR) { mu.Lock(); cdrs = append(cdrs, c); mu.Unlock() }}, h)
	if err != nil {
		t.Fatal(err)
	}
	testharness.Serve(t, srv)
	c, err := newBenchCaller("127.0.0.1:"+strconv.Itoa(int(srv.SIPAddr().Port())), rtpSink(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	for range calls {
		d, err := c.setup() // INVITE, 200, ACK
		if err == nil {
			err = c.end(d) // BYE at once, and its 200
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		mu.Lock()
		n := len(cdrs)
		mu.Unlock()
		if n == calls {
			break
		}
		if i == 500 {
			t.Fatalf("%d CDRs of %d calls after 5 s", n, calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	unanswered := 0
	for _, r := range cdrs {
		switch {
		case r.Answer.IsZero():
			unanswered++
		case r.Answer.Before(r.Start) || r.Answer.After(r.End):
			t.Errorf("call %s: answer %v outside start %v .. end %v", r.CallID, r.Answer, r.Start, r.End)
		}
		if r.Cause != "remote hangup" {
			t.Errorf("call %s: cause %q, want the caller's hangup", r.CallID, r.Cause)
		}
	}
	if unanswered > 0 {
		t.Fatalf("%d of %d calls hung up right after their ACK have no answer time in their CDR", unanswered, calls)
	}
}
