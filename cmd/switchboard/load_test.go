package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Done means 6: -help explains every flag with an example; bad flags and
// bad scenario files give one clear error naming the flag or the line.
func TestLoadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := load([]string{"-help"}, &out, &errOut); err != nil {
		t.Fatalf("-help: %v", err)
	}
	help := out.String()
	for _, want := range []string{"Examples:", "switchboard load -target", "-scenario", "-compare", "-expect", "-impair", "-pid", "-process", "-json", "-csv", "-svg", "-concurrent", "-ramp", "-rate", "-hold"} {
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
