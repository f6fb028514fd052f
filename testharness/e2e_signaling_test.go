package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// rawRequest sends one SIP request over UDP and returns the status of the
// final response and the whole response text.
func rawRequest(t *testing.T, srv *framework.Server, build func(local string) string) (int, string) {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteTo([]byte(build(conn.LocalAddr().String())), net.UDPAddrFromAddrPort(srv.SIPAddr())); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final response: %v", err)
		}
		var code int
		fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code)
		if code >= 200 {
			return code, string(buf[:n])
		}
	}
}

func TestOptionsAnswered(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))
	code, res := rawRequest(t, srv, func(local string) string {
		return "OPTIONS sip:" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bKopt1\r\n" +
			"From: <sip:probe@" + local + ">;tag=9\r\nTo: <sip:" + srv.SIPAddr().String() + ">\r\n" +
			"Call-ID: opt1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	})
	if code != 200 || !strings.Contains(res, "INVITE") {
		t.Fatalf("OPTIONS: %d\n%s", code, res)
	}
}

// CANCEL before answer: the caller's dial ends, the server answers 487, and
// the handler's ctx ends with ErrHangup.
func TestCancelBeforeAnswer(t *testing.T) {
	started := make(chan struct{}, 1)
	flowErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Ring(ctx); err != nil {
			return err
		}
		started <- struct{}{}
		<-ctx.Done()
		flowErr <- context.Cause(ctx)
		return nil
	}))
	phone := newPhone(t)
	dialCtx, cancelDial := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := phone.Call(dialCtx, uri(srv, "slow"))
		res <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not started")
	}
	cancelDial()
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("dial succeeded after cancel")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dial did not return after cancel")
	}
	select {
	case err := <-flowErr:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("flow ctx cause %v, want ErrHangup", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flow ctx not cancelled after CANCEL")
	}
	testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// A handler that rejects produces the status it chose at the caller, as a
// typed error.
func TestRejectBusy(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Reject(ctx, 486)
	}))
	err := testharness.New(t, srv).CallFails("busy", testharness.HarnessCallOptions{})
	var se *sip.StatusError
	if !errors.Is(err, sip.ErrBusy) || !errors.As(err, &se) || se.Code != 486 {
		t.Fatalf("dial error %v, want 486 ErrBusy", err)
	}
}

// Unknown routes get 404 when there is no default route.
func TestRouterNotFound(t *testing.T) {
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	srv := startServer(t, framework.Config{}, r)
	h := testharness.New(t, srv)
	if err := h.CallFails("nobody", testharness.HarnessCallOptions{}); !errors.Is(err, sip.ErrNotFound) {
		t.Fatalf("dial error %v, want ErrNotFound", err)
	}
	h.Call("tone", testharness.HarnessCallOptions{}).ExpectTone(1000)
}

// Shutting the server down sends BYE to calls in progress.
func TestShutdownHangsUpCalls(t *testing.T) {
	srv, err := framework.NewServer(framework.Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "-", RTPPortMin: 33000, RTPPortMax: 33099, Logger: testLogger(t)}, apps.Tone(1000))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	<-srv.Ready()
	phone := newPhone(t)
	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	call, err := phone.Call(cctx, uri(srv, "tone"))
	if err != nil {
		stop()
		t.Fatal(err)
	}
	if _, err := call.WaitTone(cctx, 1000, 20); err != nil {
		stop()
		t.Fatal(err)
	}
	stop()
	select {
	case <-call.Leg.Done():
		if !errors.Is(call.Leg.Err(), sip.ErrRemoteHangup) {
			t.Fatalf("phone leg ended with %v, want a BYE from the server", call.Leg.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no BYE from the server at shutdown")
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
}
