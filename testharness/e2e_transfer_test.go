package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
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

// A calls the server, the flow dials B; B transfers A to C with REFER
// (sent by our own sip.Leg.Refer): the server dials C, bridges A to C,
// reports 100 then 200 by NOTIFY (Refer returns nil), and B is released.
func TestBlindTransferByDialledParty(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	c := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999, AnswerDelay: 200 * time.Millisecond})
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, transferFlow(func() string { return b.URI("bob") }, dialErr))
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callA, err := a.Call(ctx, uri(srv, "bridge"))
	if err != nil {
		t.Fatalf("A's call: %v", err)
	}
	defer callA.Hangup(ctx)
	var callB *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("B was never called")
	}
	callA.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	if _, err := callA.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("A does not hear B before the transfer: %v", err)
	}
	if err := callB.Leg.Refer(ctx, c.URI("carol")); err != nil {
		t.Fatalf("B's REFER: %v", err)
	}
	var callC *testharness.PhoneCall
	select {
	case callC = <-c.Incoming():
	case <-ctx.Done():
		t.Fatal("C was never called")
	}
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1500}}))
	if _, err := callA.WaitTone(ctx, 1500, 20); err != nil {
		t.Fatalf("A does not hear C after the transfer: %v", err)
	}
	if _, err := callC.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("C does not hear A after the transfer: %v", err)
	}
	select {
	case <-callB.Leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("B (the transferor) was not released")
	}
	if err := callC.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-dialErr:
		if err != nil {
			t.Fatalf("Dial returned %v when the transfer target hung up, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return after C hung up")
	}
}

// A calls the server, the flow dials B; now A, the caller, transfers B to
// C with REFER: the server dials C, bridges B to C, reports 100 then 200
// by NOTIFY and releases A. B and C hear each other; when C hangs up, Dial
// returns nil with B (now the call's first leg) still on the call.
func TestBlindTransferByCaller(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	c := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999, AnswerDelay: 200 * time.Millisecond})
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, transferFlow(func() string { return b.URI("bob") }, dialErr))
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callA, err := a.Call(ctx, uri(srv, "bridge"))
	if err != nil {
		t.Fatalf("A's call: %v", err)
	}
	defer callA.Hangup(ctx)
	var callB *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("B was never called")
	}
	defer callB.Hangup(ctx)
	callA.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	if _, err := callB.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("B does not hear A before the transfer: %v", err)
	}
	if err := callA.Leg.Refer(ctx, c.URI("carol")); err != nil {
		t.Fatalf("A's REFER: %v", err)
	}
	var callC *testharness.PhoneCall
	select {
	case callC = <-c.Incoming():
	case <-ctx.Done():
		t.Fatal("C was never called")
	}
	if got := callC.Leg.RemoteIdentity().User; got != "bob" {
		t.Errorf("C sees the call from %q, want the transferee bob", got)
	}
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1500}}))
	if _, err := callB.WaitTone(ctx, 1500, 20); err != nil {
		t.Fatalf("B does not hear C after the transfer: %v", err)
	}
	if _, err := callC.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("C does not hear B after the transfer: %v", err)
	}
	select {
	case <-callA.Leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("A (the transferor) was not released")
	}
	if err := callC.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-dialErr:
		if err != nil {
			t.Fatalf("Dial returned %v when the transfer target hung up, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return after C hung up")
	}
}

// A REFER to a target that is busy is reported in the final NOTIFY (Refer
// returns ErrBusy) and A stays bridged to B, whichever of them sent it. A
// REFER from the caller of a call the flow holds (no bridge) is declined
// with 603.
func TestTransferFailuresKeepTheCall(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	busy := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999, RejectCode: 486})
	dialErr := make(chan error, 1)
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
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	callA, err := a.Call(ctx, uri(srv, "bridge"))
	if err != nil {
		t.Fatalf("A's call: %v", err)
	}
	defer callA.Hangup(ctx)
	callB := <-b.Incoming()
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	if _, err := callA.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("A does not hear B: %v", err)
	}
	for _, from := range []*testharness.PhoneCall{callB, callA} {
		err = from.Leg.Refer(ctx, busy.URI("busy"))
		if !errors.Is(err, sip.ErrBusy) {
			t.Fatalf("REFER to a busy target: %v, want ErrBusy", err)
		}
		time.Sleep(300 * time.Millisecond) // WaitTone looks at the last 200 ms
		if _, err := callA.WaitTone(ctx, 1000, 20); err != nil {
			t.Fatalf("A lost B after the failed transfer: %v", err)
		}
	}
	held, err := a.Call(ctx, uri(srv, "hold"))
	if err != nil {
		t.Fatalf("call to the holding flow: %v", err)
	}
	defer held.Hangup(ctx)
	settle() // the server counts the call answered once our ACK is in
	err = held.Leg.Refer(ctx, busy.URI("busy"))
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
	carol := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "uas_send_refer.xml", "-key", "target", carol.URI("carol"), "-mp", "32400", "-rtp_echo")
	time.Sleep(300 * time.Millisecond) // SIPp binds its port
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, transferFlow(func() string { return uas.uri("bob") }, dialErr))
	a := newPhone(t)
	callA, err := a.Call(ctx, uri(srv, "bridge"))
	if err != nil {
		t.Fatalf("A's call: %v", err)
	}
	defer callA.Hangup(ctx)
	var callC *testharness.PhoneCall
	select {
	case callC = <-carol.Incoming():
	case <-ctx.Done():
		t.Fatalf("carol was never called\n%s", tail(uas.out.Bytes(), 3000))
	}
	callA.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1500}}))
	if _, err := callA.WaitTone(ctx, 1500, 20); err != nil {
		t.Fatalf("A does not hear carol after the transfer: %v", err)
	}
	if _, err := callC.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("carol does not hear A after the transfer: %v", err)
	}
	uas.wait(t, ctx)
}

// SIPp calls; the flow dials B (a harness phone) and bridges them; SIPp,
// the caller, transfers B to C with REFER. SIPp sees 202 and the 100/200
// sipfrags and hangs up; B and C hear each other.
func TestSIPpCallerTransfersTheBridgedParty(t *testing.T) {
	requireBinary(t, "sipp", "apt-get install sip-tester")
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	c := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999})
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, transferFlow(func() string { return b.URI("bob") }, dialErr))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type sippResult struct {
		out []byte
		err error
	}
	sippDone := make(chan sippResult, 1)
	go func() {
		out, err := runSIPp(t, "-sf", scenario("uac_transfer_bridged.xml"), "-s", "bridge", "-key", "carol", c.URI("carol"), srv.SIPAddr().String())
		sippDone <- sippResult{out, err}
	}()
	var callB, callC *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case r := <-sippDone:
		t.Fatalf("sipp ended before B was called: %v\n%s", r.err, tail(r.out, 3000))
	}
	defer callB.Hangup(ctx)
	select {
	case callC = <-c.Incoming():
	case r := <-sippDone:
		t.Fatalf("sipp ended before C was called: %v\n%s", r.err, tail(r.out, 3000))
	}
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1500}}))
	if _, err := callB.WaitTone(ctx, 1500, 20); err != nil {
		t.Fatalf("B does not hear C after the transfer: %v", err)
	}
	if _, err := callC.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("C does not hear B after the transfer: %v", err)
	}
	select {
	case r := <-sippDone:
		if r.err != nil {
			t.Fatalf("sipp: %v\n%s", r.err, tail(r.out, 3000))
		}
	case <-ctx.Done():
		t.Fatal("sipp did not finish")
	}
	_ = callC.Hangup(ctx)
	select {
	case err := <-dialErr:
		if err != nil {
			t.Fatalf("Dial returned %v after C hung up, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return after C hung up")
	}
}

// baresip, a real softphone, calls the server; the flow dials B and
// bridges them; then baresip (the caller) transfers the call to C with
// its "transfer" command (a blind REFER). B and C hear each other.
func TestBaresipCallerTransfersTheBridgedParty(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499})
	c := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41500, RTPPortMax: 41999})
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{Users: users}, transferFlow(func() string { return b.URI("bob") }, dialErr))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctrl := ln.Addr().(*net.TCPAddr).Port // free for baresip's control socket
	ln.Close()
	startBaresipWith(t, srv, fmt.Sprintf("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:%d", ctrl), 440, 15,
		"/dial sip:bridge@"+srv.SIPAddr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var callB, callC *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("B was never called")
	}
	defer callB.Hangup(ctx)
	if _, err := callB.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("B does not hear baresip before the transfer: %v", err)
	}
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ctrl), 2*time.Second)
	if err != nil {
		t.Fatalf("baresip's ctrl_tcp: %v", err)
	}
	defer conn.Close()
	cmd := fmt.Sprintf(`{"command":"transfer","params":"%s","token":"xfer"}`, c.URI("carol"))
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(cmd), cmd); err != nil {
		t.Fatal(err)
	}
	select {
	case callC = <-c.Incoming():
	case <-ctx.Done():
		t.Fatal("C was never called: baresip's transfer did not reach the server")
	}
	callB.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1500}}))
	if _, err := callB.WaitTone(ctx, 1500, 20); err != nil {
		t.Fatalf("B does not hear C after the transfer: %v", err)
	}
	if _, err := callC.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("C does not hear B after the transfer: %v", err)
	}
	_ = callC.Hangup(ctx)
	select {
	case err := <-dialErr:
		if err != nil {
			t.Fatalf("Dial returned %v after C hung up, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Dial did not return after C hung up")
	}
}
