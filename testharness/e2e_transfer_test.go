package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// transferFlow dials target and reports what Dial returned.
func transferFlow(target func() string, dialErr chan<- error) framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Dial(ctx, target(), framework.DialOptions{Timeout: 10 * time.Second})
		dialErr <- err
		return err
	})
}

// transferSetup is a server whose flow bridges the caller to phone B,
// with phone C as the transfer target.
type transferSetup struct {
	h       *testharness.Harness
	srv     *framework.Server
	b, c    *testharness.Phone
	dialErr chan error
}

func newTransferSetup(t *testing.T, cfg framework.Config, cOpts testharness.PhoneOptions) *transferSetup {
	t.Helper()
	s := &transferSetup{dialErr: make(chan error, 1)}
	s.b = newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	cOpts.RTPPortMin, cOpts.RTPPortMax = 41500, 41999
	s.c = newPhoneWith(t, cOpts)
	b := s.b
	s.srv = startServer(t, cfg, transferFlow(func() string { return b.URI("bob") }, s.dialErr))
	s.h = testharness.New(t, s.srv)
	s.h.Own(s.b, s.c)
	return s
}

// bridged calls the flow from the harness (A, playing 440 Hz) and
// answers its dial at B (playing 1 kHz).
func (s *transferSetup) bridged() (callA, callB *testharness.Call) {
	callA = s.h.Call("bridge", testharness.HarnessCallOptions{Name: "A"})
	callB = s.h.ExpectIncoming(s.b, "B")
	callA.PlayTone(440, 0)
	callB.PlayTone(1000, 0)
	return callA, callB
}

// expectDialEnded fails the test unless the flow's Dial returns nil (the
// bridged party, or the transfer target, hung up).
func (s *transferSetup) expectDialEnded(t *testing.T) {
	t.Helper()
	if err := testharness.Await(s.h, s.dialErr, "Dial to return after the last party hung up"); err != nil {
		t.Fatalf("Dial returned %v when the transfer target hung up, want nil", err)
	}
}

// expectHearEachOther plays a tone at each end (x: 1000 Hz, y: 1500 Hz)
// and fails the test unless each hears the other's.
func expectHearEachOther(x, y *testharness.Call) {
	x.PlayTone(1000, 0)
	y.PlayTone(1500, 0)
	x.ExpectTone(1500)
	y.ExpectTone(1000)
}

// A calls the server, the flow dials B; B transfers A to C with REFER
// (sent by our own sip.Leg.Refer): the server dials C, bridges A to C,
// reports 100 then 200 by NOTIFY (Refer returns nil), and B is released.
func TestBlindTransferByDialledParty(t *testing.T) {
	s := newTransferSetup(t, framework.Config{}, testharness.PhoneOptions{AnswerDelay: 200 * time.Millisecond})
	callA, callB := s.bridged()
	callA.ExpectTone(1000)
	if err := callB.Leg.Refer(s.h.Context(), s.c.URI("carol")); err != nil {
		t.Fatalf("B's REFER: %v", err)
	}
	callC := s.h.ExpectIncoming(s.c, "C")
	callC.PlayTone(1500, 0)
	callA.ExpectTone(1500)
	callC.ExpectTone(440)
	callB.ExpectHangup() // the transferor is released
	callC.HangUp()
	s.expectDialEnded(t)
}

// A calls the server, the flow dials B; now A, the caller, transfers B to
// C with REFER: the server dials C, bridges B to C, reports 100 then 200
// by NOTIFY and releases A. B and C hear each other; when C hangs up, Dial
// returns nil with B (now the call's first leg) still on the call.
func TestBlindTransferByCaller(t *testing.T) {
	s := newTransferSetup(t, framework.Config{}, testharness.PhoneOptions{AnswerDelay: 200 * time.Millisecond})
	callA, callB := s.bridged()
	callB.ExpectTone(440)
	if err := callA.Leg.Refer(s.h.Context(), s.c.URI("carol")); err != nil {
		t.Fatalf("A's REFER: %v", err)
	}
	callC := s.h.ExpectIncoming(s.c, "C")
	if got := callC.Leg.RemoteIdentity().User; got != "bob" {
		t.Errorf("C sees the call from %q, want the transferee bob", got)
	}
	expectHearEachOther(callB, callC)
	callA.ExpectHangup() // the transferor is released
	callC.HangUp()
	s.expectDialEnded(t)
}

// A REFER to a target that is busy is reported in the final NOTIFY (Refer
// returns ErrBusy) and A stays bridged to B, whichever of them sent it. A
// REFER from the caller of a call the flow holds (no bridge) is declined
// with 603.
func TestTransferFailuresKeepTheCall(t *testing.T) {
	dialErr := make(chan error, 1)
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	busy := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999, RejectCode: 486})
	bridge := transferFlow(func() string { return b.URI("bob") }, dialErr)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if c.User() == "hold" {
			if err := c.Answer(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		}
		return bridge.ServeCall(ctx, c)
	}))
	h := testharness.New(t, srv)
	h.Own(b, busy)
	callA := h.Call("bridge", testharness.HarnessCallOptions{Name: "A"})
	callB := h.ExpectIncoming(b, "B")
	callB.PlayTone(1000, 0)
	callA.ExpectTone(1000)
	for _, from := range []*testharness.Call{callB, callA} {
		err := from.Leg.Refer(h.Context(), busy.URI("busy"))
		if !errors.Is(err, sip.ErrBusy) {
			t.Fatalf("REFER from %s to a busy target: %v, want ErrBusy", from.Name, err)
		}
		time.Sleep(300 * time.Millisecond) // ExpectTone looks at the last 200 ms
		callA.ExpectTone(1000)             // A kept B after the failed transfer
	}
	held := h.Call("hold", testharness.HarnessCallOptions{Name: "the held caller"})
	settle() // the server counts the call answered once our ACK is in
	err := held.Leg.Refer(h.Context(), busy.URI("busy"))
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 603 {
		t.Fatalf("REFER from the caller of an unbridged call: %v, want 603", err)
	}
}

// SIPp calls; the flow transfers it with REFER (Call.Transfer). SIPp checks
// Refer-To, reports success by NOTIFY and expects our BYE.
func TestSIPpReceivesTransfer(t *testing.T) {
	result := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		err := c.Transfer(ctx, "sip:carol@127.0.0.1:5099")
		result <- err
		return err
	}))
	if out, err := runSIPp(t, "-sf", scenario("uac_receive_refer.xml"), "-s", "xfer", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Transfer: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Transfer did not return")
	}
}

// The flow dials SIPp, which transfers the caller (a harness phone) to
// carol (another harness phone) with REFER: the caller ends up hearing
// carol, and SIPp sees 202, NOTIFY 100 and a terminating NOTIFY 200.
func TestSIPpTransfersTheCaller(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	carol := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999})
	uas := startSIPpUAS(t, ctx, "uas_send_refer.xml", "-key", "target", carol.URI("carol"), "-mp", "32400", "-rtp_echo")
	srv := startServer(t, framework.Config{}, transferFlow(func() string { return uas.uri("bob") }, make(chan error, 1)))
	h := testharness.New(t, srv)
	h.Own(carol)
	callA := h.Call("bridge", testharness.HarnessCallOptions{Name: "A"})
	callC := h.ExpectIncoming(carol, "carol")
	expectHearEachOther(callA, callC)
	uas.wait(t, ctx)
}

// SIPp calls; the flow dials B (a harness phone) and bridges them; SIPp,
// the caller, transfers B to C with REFER. SIPp sees 202 and the 100/200
// sipfrags and hangs up; B and C hear each other.
func TestSIPpCallerTransfersTheBridgedParty(t *testing.T) {
	requireBinary(t, "sipp", "apt-get install sip-tester")
	s := newTransferSetup(t, framework.Config{}, testharness.PhoneOptions{})
	sippDone := goSIPp(t, "-sf", scenario("uac_transfer_bridged.xml"), "-s", "bridge", "-key", "carol", s.c.URI("carol"), s.srv.SIPAddr().String())
	callB := s.h.ExpectIncoming(s.b, "B")
	callC := s.h.ExpectIncoming(s.c, "C")
	expectHearEachOther(callB, callC)
	if r := testharness.Await(s.h, sippDone, "SIPp to finish"); r.err != nil {
		t.Fatalf("sipp: %v\n%s", r.err, tail(r.out, 3000))
	}
	callC.HangUp()
	s.expectDialEnded(t)
}

// sippResult is how a SIPp run ended.
type sippResult struct {
	out []byte
	err error
}

// goSIPp runs SIPp (as runSIPp) in the background; its output is logged
// if the test fails before reading the result.
func goSIPp(t *testing.T, args ...string) <-chan sippResult {
	done := make(chan sippResult, 1)
	logged := make(chan sippResult, 1)
	go func() {
		out, err := runSIPp(t, args...)
		r := sippResult{out, err}
		logged <- r
		done <- r
	}()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		select {
		case r := <-logged:
			t.Logf("sipp: %v\n%s", r.err, tail(r.out, 3000))
		default:
		}
	})
	return done
}

// baresip, a real softphone, calls the server; the flow dials B and
// bridges them; then baresip (the caller) transfers the call to C with
// its "transfer" command (a blind REFER). B and C hear each other.
func TestBaresipCallerTransfersTheBridgedParty(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	s := newTransferSetup(t, framework.Config{Users: users}, testharness.PhoneOptions{})
	ctrl := freeTCPPort(t) // for baresip's control socket
	startBaresipWith(t, s.srv, fmt.Sprintf("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:%d", ctrl), 440, 15,
		"/dial sip:bridge@"+s.srv.SIPAddr().String())
	callB := s.h.ExpectIncoming(s.b, "B")
	callB.ExpectTone(440) // B hears baresip before the transfer
	baresipCommand(t, ctrl, "transfer", s.c.URI("carol"))
	callC := s.h.ExpectIncoming(s.c, "C")
	expectHearEachOther(callB, callC)
	callC.HangUp()
	s.expectDialEnded(t)
}
