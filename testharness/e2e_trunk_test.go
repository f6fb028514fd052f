package testharness_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A PSTN call through a trunk: the carrier (SIPp) challenges with 407,
// checks the digest and caller id, answers and echoes RTP. A harness
// phone calls the server, whose flow dials the number through the trunk;
// the phone hears its own tone come back through bridge, trunk and carrier.
func TestDialThroughTrunkWith407(t *testing.T) {
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	port := freeUDPPort(t)
	trunk := sip.Trunk{Name: "carrier", Host: "127.0.0.1", Port: port, Username: "trunkuser", Password: "trunkpass", CallerID: "15550001111"}
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{Trunks: []sip.Trunk{trunk}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Dial(ctx, "+4930123456", framework.DialOptions{Trunk: "carrier", Timeout: 10 * time.Second})
		dialErr <- err
		return err
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgFile := filepath.Join(t.TempDir(), "carrier-messages.log")
	cmd := exec.CommandContext(ctx, sipp, "-sf", scenario("carrier_407.xml"), "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-mp", "32400", "-rtp_echo",
		"-m", "1", "-timeout", "30s", "-nostdin", "-trace_msg", "-message_file", msgFile, "-trace_err", "-error_file", filepath.Join(t.TempDir(), "err.log"))
	var out testharness.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sippDone := make(chan error, 1)
	go func() { sippDone <- cmd.Wait() }()
	testharness.WaitUDPBound(t, port, 10*time.Second)

	phone := newPhone(t)
	call, err := phone.Call(ctx, uri(srv, "pstn"))
	if err != nil {
		t.Fatalf("call: %v (dial: %v)\n%s", err, <-dialErr, tail(out.Bytes(), 2000))
	}
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
	if _, err := call.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("no echo of our tone through the trunk: %v\n%s", err, tail(out.Bytes(), 2000))
	}
	_ = call.Hangup(ctx)
	select {
	case err := <-sippDone:
		if err != nil {
			t.Fatalf("carrier scenario failed (auth or caller id): %v\n%s", err, tail(out.Bytes(), 3000))
		}
	case <-ctx.Done():
		t.Fatal("carrier never saw the BYE")
	}
	checkProxyDigest(t, msgFile, "trunkuser", "carrier.test", "trunkpass")
}

// checkProxyDigest recomputes the MD5 digest of the authenticated INVITE
// in SIPp's message trace.
func checkProxyDigest(t *testing.T, msgFile, user, realm, password string) {
	t.Helper()
	data, err := os.ReadFile(msgFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Proxy-Authorization: Digest ([^\r\n]+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("no Proxy-Authorization in the trace")
	}
	param := func(k string) string {
		pm := regexp.MustCompile(k + `="([^"]*)"`).FindSubmatch(m[1])
		if pm == nil {
			return ""
		}
		return string(pm[1])
	}
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	want := h(h(user+":"+realm+":"+password) + ":" + param("nonce") + ":" + h("INVITE:"+param("uri")))
	if param("response") != want || param("username") != user || param("realm") != realm {
		t.Fatalf("digest %q, want %q (uri %q)", param("response"), want, param("uri"))
	}
}

// Calls from a trunk's address are the trunk's: a DID is accepted and the
// flow sees Trunk() and the DID; a number that is not ours gets 404.
func TestInboundTrunkCallsRoutedByDID(t *testing.T) {
	trunk := sip.Trunk{Name: "carrier", Host: "127.0.0.1", DIDs: []string{"+15557654321"}}
	seen := make(chan string, 1)
	srv := startServer(t, framework.Config{Trunks: []sip.Trunk{trunk}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		seen <- c.Trunk() + " " + c.User()
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: time.Second}))
	}))
	h := testharness.New(t, srv) // its phone, on 127.0.0.1, is the "carrier"
	call := h.Call("+15557654321", testharness.HarnessCallOptions{Name: "the carrier's call"})
	if got := testharness.Await(h, seen, "the flow"); got != "carrier +15557654321" {
		t.Fatalf("flow saw %q", got)
	}
	call.End()
	err := h.CallFails("+19990000000", testharness.HarnessCallOptions{Name: "a call to a foreign number from the trunk"})
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("call to a foreign number from the trunk: %v, want 404", err)
	}
}

// A trunk with register = true registers at the carrier (SIPp checks the
// digest and the Contact) and unregisters when the server shuts down,
// using one Call-ID for both as RFC 3261 10.2 asks.
func TestTrunkRegistersAndUnregisters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "registrar_401.xml", "-key", "user", "acme", "-key", "pass", "tr-secret")
	cfg := framework.Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "-", RTPPortMin: 30000, RTPPortMax: 30999, Logger: testLogger(t),
		Trunks: []sip.Trunk{{Name: "carrier", Host: "127.0.0.1", Port: uas.port, Username: "acme", Password: "tr-secret", Register: true}}}
	srv, err := framework.NewServer(cfg, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(srvCtx) }()
	<-srv.Ready()
	time.Sleep(time.Second) // the registration round trip
	stop()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("server did not stop")
	}
	uas.wait(t, ctx)
}
