package testharness_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// linphone is Linphone's console client (Debian linphone-cli) run as a
// daemon through linphonecsh: it registers as user over one transport,
// auto-answers, plays a WAV file as its microphone and records what it
// hears into another. linphonecsh reaches its daemon through one socket
// per Unix user (/tmp/linphonec-UID), so one instance runs at a time.
type linphone struct {
	dir, log, socket string
	bin              string
}

// linphoneOptions: Transport is "udp", "tcp" or "tls" (default udp); for
// TLS the server's development certificate is the only root Linphone
// trusts, and it verifies it against the address it dials.
type linphoneOptions struct {
	User, Password string
	Transport      string
}

func startLinphone(t *testing.T, srv *framework.Server, o linphoneOptions) *linphone {
	t.Helper()
	bin := requireBinary(t, "linphonecsh", "apt-get install linphone-cli")
	requireBinary(t, "sox", "apt-get install sox")
	l := &linphone{dir: t.TempDir(), bin: bin, socket: fmt.Sprintf("/tmp/linphonec-%d", os.Getuid())}
	l.log = filepath.Join(l.dir, "linphone.log")
	if c, err := net.Dial("unix", l.socket); err == nil {
		c.Close()
		t.Fatalf("another linphonec daemon is running for this user (%s); stop it with: linphonecsh exit", l.socket)
	}
	proxy := srv.SIPAddr().String()
	if o.Transport == "" {
		o.Transport = "udp"
	}
	var tlsLines string
	if o.Transport == "tls" {
		proxy = srv.TLSAddr().String()
		ca := filepath.Join(l.dir, "server-cert.pem")
		if err := os.WriteFile(ca, srv.Agent().TLSCertificatePEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		tlsLines = "verify_server_certs=1\nverify_server_cn=1\nroot_ca=" + ca + "\n"
	}
	rc := fmt.Sprintf(`[sip]
sip_port=-1
sip_tcp_port=-1
sip_tls_port=-1
default_proxy=0
%s
[storage]
uri=%s

[sound]
echocancellation=0

[rtp]
audio_rtp_port=32000-32999

[proxy_0]
reg_proxy=<sip:%s;transport=%s>
reg_identity=sip:%s@127.0.0.1
reg_expires=120
reg_sendregister=1
publish=0

[auth_info_0]
username=%s
passwd=%s
realm=switchboard
`, tlsLines, filepath.Join(l.dir, "storage.db"), proxy, o.Transport, o.User, o.User, o.Password)
	rcPath := filepath.Join(l.dir, "linphonerc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	// The microphone: 30 s of 440 Hz.
	if out, err := exec.Command("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", l.file("mic.wav"), "synth", "30", "sine", "440", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	if out, err := l.run("init", "-a", "-c", rcPath, "-d", "6", "-l", l.log); err != nil {
		t.Fatalf("linphonecsh init: %v %s", err, out)
	}
	t.Cleanup(func() {
		pid := daemonPID(rcPath)
		_, _ = l.run("exit")
		// linphonec sometimes hangs in its own shutdown (seen stuck on a
		// futex after "exit", ignoring SIGTERM): give it 5 s, then kill
		// that process (found by its unique config path).
		for i := 0; pid > 0 && i < 50 && processAlive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if pid > 0 && processAlive(pid) {
			t.Logf("linphonec (pid %d) did not exit; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			out, _ := os.ReadFile(l.log)
			t.Logf("linphone log (tail):\n%s", filterLinphoneLog(out, 60))
		}
	})
	// The daemon takes a moment to open its socket.
	testharness.WaitUntil(t, 10*time.Second, "linphonec to start", func() bool {
		out, err := l.run("generic", "soundcard use files")
		return err == nil && strings.Contains(out, "wav files")
	})
	if daemonPID(rcPath) == 0 {
		t.Fatal("linphonec runs but its process was not found (cleanup could not stop it)")
	}
	return l
}

func (l *linphone) file(name string) string { return filepath.Join(l.dir, name) }

// run runs one linphonecsh action (bounded to 10 s).
func (l *linphone) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, l.bin, args...).CombinedOutput()
	return string(out), err
}

// cmd sends one console command to the daemon.
func (l *linphone) cmd(t *testing.T, command string) string {
	t.Helper()
	out, err := l.run("generic", command)
	if err != nil {
		t.Fatalf("linphonecsh generic %q: %v %s", command, err, out)
	}
	return out
}

// waitState waits until the console's call list shows state (e.g.
// "StreamsRunning"), or, for "", until there is no call.
func (l *linphone) waitState(t *testing.T, d time.Duration, state string) {
	t.Helper()
	testharness.WaitUntil(t, d, "linphone call state "+fmt.Sprintf("%q", state), func() bool {
		out, err := l.run("generic", "calls")
		if err != nil {
			return false
		}
		if state == "" {
			return strings.Contains(out, "No active call")
		}
		return strings.Contains(out, state)
	})
}

// filterLinphoneLog keeps the last n lines that matter (SIP, TLS, calls).
func filterLinphoneLog(b []byte, n int) string {
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "error") || strings.Contains(line, "warning") || strings.Contains(line, "Channel") ||
			strings.Contains(line, "state changed") || strings.Contains(line, "SIP/2.0") {
			keep = append(keep, line)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

// daemonPID finds the linphonec daemon started with config file rc (a
// path unique to the test), or 0.
func daemonPID(rc string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "linphonec" && slices.Contains(args, rc) {
			return pid
		}
	}
	return 0
}

// processAlive reports whether pid runs (a zombie counts as gone).
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
