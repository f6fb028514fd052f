package testharness_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// baresip is a real softphone (Debian baresip-core) run as a subprocess:
// it registers as alice with digest auth, plays a tone WAV as its
// microphone, auto-answers, and records what it hears.
type baresip struct {
	dir, rec string
	port     int
	cmd      *exec.Cmd
	done     chan error
}

func startBaresip(t *testing.T, srv *framework.Server, toneHz int, seconds int, commands ...string) *baresip {
	t.Helper()
	return startBaresipWith(t, srv, "", toneHz, seconds, commands...)
}

// startBaresipWith is startBaresip with extra lines for baresip's config.
func startBaresipWith(t *testing.T, srv *framework.Server, extraConfig string, toneHz int, seconds int, commands ...string) *baresip {
	t.Helper()
	bin := requireBinary(t, "baresip", "apt-get install baresip-core")
	requireBinary(t, "sox", "apt-get install sox")
	dir := t.TempDir()
	b := &baresip{dir: dir, rec: filepath.Join(dir, "rec"), port: freeUDPPort(t), done: make(chan error, 1)}
	if err := os.MkdirAll(b.rec, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "mic.wav")
	if out, err := exec.Command("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", src, "synth", fmt.Sprint(seconds+5), "sine", fmt.Sprint(toneHz), "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
audio_player aufile,/dev/null
audio_source aufile,%s
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
snd_path %s
%s
`, b.port, src, b.rec, extraConfig)
	accounts := fmt.Sprintf("<sip:alice@%s>;auth_pass=s3cret;regint=60;answermode=auto\n", srv.SIPAddr())
	for name, body := range map[string]string{"config": config, "accounts": accounts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-n", "127.0.0.1", "-f", dir, "-t", fmt.Sprint(seconds)}
	for _, c := range commands {
		args = append(args, "-e", c)
	}
	b.cmd = exec.Command(bin, args...)
	log, _ := os.Create(filepath.Join(dir, "baresip.log"))
	b.cmd.Stdout, b.cmd.Stderr, b.cmd.Dir = log, log, dir
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- b.cmd.Wait(); log.Close() }()
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		<-b.done
		if t.Failed() {
			out, _ := os.ReadFile(filepath.Join(dir, "baresip.log"))
			t.Logf("baresip log:\n%s", tail(out, 4000))
		}
	})
	return b
}

// heard waits for baresip to exit and returns the dominant frequency and
// loudness of the last second of what it recorded.
func (b *baresip) heard(t *testing.T) (freq, rms float64) {
	t.Helper()
	select {
	case <-b.done:
		b.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("baresip did not exit")
	}
	files, _ := filepath.Glob(filepath.Join(b.rec, "*-dec.wav"))
	if len(files) == 0 {
		t.Fatal("baresip recorded nothing")
	}
	l, err := testharness.LoudestWindow(files[0], time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l.Frequency, l.RMS
}

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func waitRegistered(t *testing.T, srv *framework.Server, user string) {
	t.Helper()
	waitFor(t, 10*time.Second, user+" to register", func() bool { return len(srv.Agent().Registrar().Lookup(user)) > 0 })
}

// baresip registers with digest auth, calls a route, and hears its tone.
func TestBaresipRegistersCallsAndHearsTone(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, media.NewTone(media.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
	}))
	b := startBaresip(t, srv, 440, 6, "/dial sip:tone@"+srv.SIPAddr().String())
	waitRegistered(t, srv, "alice")
	freq, rms := b.heard(t)
	if rms < 300 || freq < 980 || freq > 1020 {
		t.Fatalf("baresip heard %.0f Hz at rms %.0f, want 1000 Hz", freq, rms)
	}
}

// Go code dials the registered user by name: a harness phone calls a route
// whose flow Dials "alice"; baresip auto-answers and the two hear each other.
func TestDialRegisteredBaresip(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
	}))
	b := startBaresip(t, srv, 440, 8)
	waitRegistered(t, srv, "alice")
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := phone.Call(ctx, uri(srv, "alice"))
	if err != nil {
		t.Fatalf("call to alice: %v", err)
	}
	call.Play(media.NewTone(media.Tone{Freqs: []float64{1000}}))
	if _, err := call.WaitTone(ctx, 440, 20); err != nil {
		t.Fatalf("phone does not hear baresip's 440 Hz: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // let baresip record a stretch of our tone
	_ = call.Hangup(ctx)
	freq, rms := b.heard(t)
	if rms < 300 || freq < 980 || freq > 1020 {
		t.Fatalf("baresip heard %.0f Hz at rms %.0f, want 1000 Hz", freq, rms)
	}
}

// baresip offers rtcp-mux; the server answers it, and after a 10 s call
// the CDR has the round trip measured from baresip's reports (LSR/DLSR of
// our SRs, all on the RTP port) and MOS estimates for both directions.
func TestBaresipRTCPMuxReportsInCDR(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	cdrs := make(chan framework.CDR, 1)
	// Reports every ~second from us, so baresip's RRs (about every 5 s)
	// carry the LSR of one of our SRs within the 10 s call.
	srv := startServer(t, framework.Config{Users: users, RTCPInterval: time.Second, OnCallEnd: func(c framework.CDR) { cdrs <- c }},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
			return c.Play(ctx, media.NewTone(media.Tone{Freqs: []float64{1000}, Duration: 30 * time.Second}))
		}))
	b := startBaresipWith(t, srv, "rtcp_mux\t\tyes", 440, 10, "/dial sip:tone@"+srv.SIPAddr().String())
	waitRegistered(t, srv, "alice")
	if freq, rms := b.heard(t); rms < 300 || freq < 980 || freq > 1020 {
		t.Fatalf("baresip heard %.0f Hz at rms %.0f, want 1000 Hz", freq, rms)
	}
	var cdr framework.CDR
	select {
	case cdr = <-cdrs:
	case <-time.After(10 * time.Second):
		t.Fatal("no CDR")
	}
	m := cdr.Media
	t.Logf("CDR media: %+v", m)
	if m.PacketsIn < 100 || m.RTTSamples == 0 || m.RTT < 0 || m.RTT > 100*time.Millisecond || m.RemoteLost != 0 ||
		m.MOS < 4.3 || m.RemoteMOS < 4.3 {
		t.Fatalf("CDR media %+v: want RTT measured from baresip's RTCP and clean MOS both ways", m)
	}
	log, _ := os.ReadFile(filepath.Join(b.dir, "baresip.log"))
	if !bytes.Contains(log, []byte("multiplexing enabled")) {
		t.Fatalf("baresip did not enable rtcp-mux:\n%s", tail(log, 3000))
	}
	if bytes.Contains(log, []byte("drop incoming RTCP")) {
		t.Fatalf("baresip dropped our RTCP:\n%s", tail(log, 3000))
	}
}
