package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
)

// Done means 6: -help explains every flag with an example; bad flags and
// bad scenario files give one clear error naming the flag or the line.
func TestLoadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := load([]string{"-help"}, &out, &errOut); err != nil {
		t.Fatalf("-help: %v", err)
	}
	help := out.String()
	for _, want := range []string{"Examples:", "switchboard load -target", "-scenario", "-compare", "-expect", "-impair", "-pid", "-process", "-json", "-csv", "-svg", "-concurrent", "-ramp", "-rate", "-hold", "-transport webrtc", "-ws", "-token", "-data-dir", "mixed:30"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.scn")
	if err := os.WriteFile(bad, []byte("target sip:a@127.0.0.1:5060\n\nrate 2\nexpect tone 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"-rate", "x"}, `invalid value "x" for flag -rate`},
		{[]string{"-rate", "0"}, "call rate 0 must be in"},
		{[]string{"-hold", "5s-1s"}, "-hold: hold 5s-1s: upper bound below lower"},
		{[]string{"-expect", "beep"}, `-expect: "beep"`},
		{[]string{"-impair", "loss 200%"}, "-impair: loss"},
		{[]string{"-target", "nowhere"}, "-target: \"nowhere\" is neither"},
		{[]string{"-rtp-ports", "9"}, "-rtp-ports"},
		{[]string{"-scenario", bad}, bad + ":4: bad step"},
		{[]string{"-scenario", filepath.Join(dir, "missing.scn")}, "no such file"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		err := load(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load %q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// Done means 5 (second half): a dead address fails at once with a message
// that says so, before any call is tried.
func TestLoadDeadAddress(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	var out, errOut bytes.Buffer
	err = load([]string{"-target", addr, "-duration", "5s", "-quiet"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "nothing listens for SIP at "+addr) {
		t.Fatalf("err %v, want 'nothing listens'", err)
	}
	if out.Len() != 0 {
		t.Errorf("a report was printed for a dead address:\n%s", out.String())
	}
}

func TestHostPortAndRetarget(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"sip:ivr@127.0.0.1:5060", "127.0.0.1:5060"},
		{"sip:ivr@example.com", "example.com:5060"},
		{"sip:ivr@10.0.0.1:5070;transport=udp", "10.0.0.1:5070"},
		{"sip:[::1]:5080", "[::1]:5080"},
	} {
		if got := hostPort(tc.uri); got != tc.want {
			t.Errorf("hostPort(%q) = %q, want %q", tc.uri, got, tc.want)
		}
	}
	if got := retarget("sip:ivr@127.0.0.1:5060", "127.0.0.1:5070"); got != "sip:ivr@127.0.0.1:5070" {
		t.Errorf("retarget: %q", got)
	}
}

// -transport webrtc end to end through the flags: virtual browsers log in
// with tokens minted from the server's data dir key, call the tone route
// by name and hear it; expecting another tone fails them; the JSON says
// which transport carried each call.
func TestLoadWebRTCFlags(t *testing.T) {
	dir := t.TempDir()
	key := []byte("a token key for the load test, 32+")
	if err := os.WriteFile(filepath.Join(dir, "token.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	srv, err := framework.NewServer(framework.Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RTPPortMin: 35000, RTPPortMax: 35199,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Browsers: &framework.BrowserConfig{TokenKey: key, ICEAddr: "127.0.0.1:0"}}, r)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	ws := "ws://" + srv.HTTPAddr() + "/ws"
	jsonOut := filepath.Join(dir, "run.json")
	var out, errOut bytes.Buffer
	args := []string{"-transport", "webrtc", "-ws", ws, "-target", "tone", "-expect", "tone:1000", "-rate", "2", "-duration", "1500ms",
		"-hold", "1s", "-data-dir", dir, "-quiet", "-json", jsonOut}
	if err := load(args, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	t.Log("\n" + out.String())
	for _, want := range []string{"browsers via " + ws + " calling tone", "3 attempted, 3 answered, 3 completed, 0 failed", "heard tone 1000 Hz:", "3 of 3 calls", "webrtc 3 attempted"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	js, err := os.ReadFile(jsonOut)
	if err != nil || strings.Count(string(js), `"transport": "webrtc"`) != 3 {
		t.Errorf("JSON (%v): %.800s", err, js)
	}

	out.Reset()
	args[7] = "tone:600"
	if err := load(append(args[:len(args)-2], "-setup-timeout", "3s"), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 completed, 3 failed") || !strings.Contains(out.String(), "not heard: tone 600 Hz") {
		t.Errorf("expecting 600 Hz from the 1 kHz route:\n%s", out.String())
	}
}

// Browser-caller flags: a clear error for each mistake, and a WebSocket
// address where nothing listens fails before any call.
func TestLoadWebRTCFlagErrors(t *testing.T) {
	pc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.Addr().String()
	pc.Close()
	var out, errOut bytes.Buffer
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-transport", "carrier-pigeon"}, `-transport: "carrier-pigeon": want sip, webrtc or mixed:PCT`},
		{[]string{"-transport", "mixed:100"}, "want mixed:PCT with PCT in (0, 100)"},
		{[]string{"-transport", "webrtc", "-ws", "http://x/ws"}, "WebSocket URL"},
		{[]string{"-transport", "webrtc", "-data-dir", t.TempDir()}, "browser callers need a token"},
		{[]string{"-transport", "webrtc", "-token", "t", "-compare", "127.0.0.1:5070"}, "-compare"},
		{[]string{"-transport", "webrtc", "-token", "t", "-ws", "ws://" + dead + "/ws", "-quiet"}, "nothing listens for WebSocket at " + dead},
	} {
		err := load(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("load %q: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
	if out.Len() != 0 {
		t.Errorf("a report was printed:\n%s", out.String())
	}
}
