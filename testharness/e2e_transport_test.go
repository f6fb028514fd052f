package testharness_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A call over TCP works like one over UDP.
func TestCallOverTCP(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))
	h := testharness.New(t, srv)
	call := h.Call("tone", testharness.HarnessCallOptions{Name: "the call over TCP", URI: uri(srv, "tone") + ";transport=tcp"})
	call.ExpectTone(1000)
	call.HangUp()
	h.ExpectIdle()
}

// A peer that vanishes without BYE (its RTP stops) is hung up after the
// media timeout and the flow sees ErrHangup.
func TestMediaTimeoutHangsUpDeadCall(t *testing.T) {
	flowErr := make(chan error, 1)
	srv := startServer(t, framework.Config{MediaTimeout: time.Second}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		_, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 1, FirstDigitTimeout: time.Minute})
		flowErr <- err
		return err
	}))
	h := testharness.New(t, srv)
	call := h.Call("dead", testharness.HarnessCallOptions{})
	time.Sleep(1500 * time.Millisecond) // alive: the phone sends silence, no timeout
	if srv.ActiveCalls() != 1 {
		t.Fatal("call ended although RTP was flowing")
	}
	_ = call.Leg.Endpoint().Close() // the phone "loses power": no more RTP, no BYE
	if err := testharness.Await(h, flowErr, "the dead call to be torn down"); !errors.Is(err, framework.ErrHangup) {
		t.Fatalf("flow got %v, want ErrHangup", err)
	}
	call.ExpectHangup() // the server's BYE
	if !errors.Is(call.Leg.Err(), sip.ErrRemoteHangup) {
		t.Fatalf("phone leg ended with %v, want the server's BYE", call.Leg.Err())
	}
}

// A peer without RFC 4733 (a PSTN gateway) sends DTMF as tones: the
// server detects them in the audio and CollectDigits gets them.
func TestInbandDTMFFromGatewayWithoutRFC4733(t *testing.T) {
	got := make(chan string, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		d, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 4, Terminators: "#", FirstDigitTimeout: 10 * time.Second})
		got <- d
		return err
	}))
	h := testharness.New(t, srv)
	gw := h.Phone(testharness.PhoneOptions{InbandDTMF: true, RTPPortMin: 41000, RTPPortMax: 41999})
	call := h.Call("collect", testharness.HarnessCallOptions{Name: "the gateway", Phone: gw})
	if call.Leg.Endpoint().Config().DTMFPayloadType != 0 {
		t.Fatal("telephone-event was negotiated; the test needs a peer without it")
	}
	time.Sleep(200 * time.Millisecond)
	call.Press("42*#")
	if d := testharness.Await(h, got, "the digits to be collected"); d != "42*" {
		t.Fatalf("collected %q, want 42*", d)
	}
}

// Hold: the phone holds the server, which must answer recvonly and stop
// sending; unhold brings the tone back. (The re-INVITE code is shared by
// both sides of a dialog; server-initiated hold has no Call verb yet.)
func TestHoldAndResume(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))
	h := testharness.New(t, srv)
	ctx := h.Context()
	call := h.Call("tone", testharness.HarnessCallOptions{})
	call.ExpectTone(1000)
	if err := call.Leg.Hold(ctx); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if d := call.Leg.Endpoint().Config().Direction; d != "sendonly" {
		t.Fatalf("after our hold offer we are %q, want sendonly (the server answered recvonly)", d)
	}
	time.Sleep(100 * time.Millisecond) // packets already in flight
	n := call.Leg.Endpoint().Stats().PacketsIn
	time.Sleep(500 * time.Millisecond)
	if got := call.Leg.Endpoint().Stats().PacketsIn - n; got > 0 {
		t.Fatalf("server sent %d packets while on hold", got)
	}
	if err := call.Leg.Unhold(ctx); err != nil {
		t.Fatalf("unhold: %v", err)
	}
	mark := call.Mark()
	if _, err := call.WaitFor(ctx, 200*time.Millisecond, func(l testharness.Listen) bool {
		return call.Mark() > mark+1600 && l.Frequency > 980 && l.Frequency < 1020
	}); err != nil {
		t.Fatalf("tone did not resume after unhold: %v", err)
	}
}

// With Config.RTPKeepSockets an ended call's RTP socket pair stays bound
// while its port rests and the next call gets it back: the second call
// is answered from the first call's RTP port (one of 500 pairs, so not
// by chance) and its audio flows both ways through the reused sockets.
func TestKeptRTPSocketsCarryTheNextCall(t *testing.T) {
	srv := startServer(t, framework.Config{RTPKeepSockets: 4, RTPPortMin: 34000, RTPPortMax: 34999}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Echo(ctx)
	}))
	h := testharness.New(t, srv)
	port := func(c *testharness.Call) uint16 { return c.Leg.Endpoint().Config().Remote.Port() }
	first := h.Call("echo", testharness.HarnessCallOptions{Name: "the first call"})
	first.Play(audio.NewTone(audio.Tone{Freqs: []float64{700}}))
	first.ExpectTone(700)
	p1 := port(first)
	first.End()
	h.ExpectIdle()
	time.Sleep(2500 * time.Millisecond) // the port's rest
	second := h.Call("echo", testharness.HarnessCallOptions{Name: "the second call"})
	second.Play(audio.NewTone(audio.Tone{Freqs: []float64{1100}}))
	second.ExpectTone(1100)
	if p2 := port(second); p2 != p1 {
		t.Fatalf("the second call got RTP port %d, want the kept %d", p2, p1)
	}
	second.End()
	h.ExpectIdle()
	// The pool still keeps the pair; closing it (as shutdown does) lets
	// the harness's leak check find every socket closed.
	srv.Ports().Close()
}
