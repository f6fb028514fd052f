package testharness_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
)

func runSIPp(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"-i", "127.0.0.1", "-p", "0", "-m", "1", "-timeout", "30s", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(t.TempDir(), "err.log")}
	cmd := exec.CommandContext(ctx, sipp, append(base, args...)...)
	cmd.Dir = "/usr/share/sip-tester"
	return cmd.CombinedOutput()
}

func scenario(name string) string {
	p, _ := filepath.Abs(filepath.Join("testdata", "sipp", name))
	return p
}

// SIPp registers with digest auth (good password → 200, wrong → 403); the
// registered contact is then reachable by name through Dial.
func TestSIPpRegisterWithDigestAuth(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: time.Second}))
	}))
	target := srv.SIPAddr().String()
	if out, err := runSIPp(t, "-sf", scenario("register_auth.xml"), "-s", "alice", "-au", "alice", "-ap", "s3cret", target); err != nil {
		t.Fatalf("register with the right password failed: %v\n%s", err, tail(out, 3000))
	}
	if b := srv.Agent().Registrar().Lookup("alice"); len(b) != 1 || !strings.HasPrefix(b[0].Contact, "sip:alice@127.0.0.1:") {
		t.Fatalf("bindings after REGISTER: %+v", b)
	}
	out, err := runSIPp(t, "-sf", scenario("register_auth.xml"), "-s", "alice", "-au", "alice", "-ap", "wrong", target)
	if err == nil {
		t.Fatalf("register with a wrong password succeeded:\n%s", tail(out, 3000))
	}
}
