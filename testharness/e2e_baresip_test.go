package testharness_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
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
	return startBaresipOpts(t, srv, baresipOptions{extraConfig: extraConfig}, toneHz, seconds, commands...)
}

// baresipOptions vary the softphone: codec is its one audio codec module
// (default g711.so; g722.so or opus.so make that codec all it offers and
// accepts), extraConfig lines are added to its config, and registrar is
// the account's registrar URI part (default the server's UDP address).
// account replaces the accounts line (default alice, auto-answer), and
// files are written into the config directory too (e.g. "contacts").
type baresipOptions struct {
	codec, extraConfig, registrar string
	// accountParams are appended to alice's account line (";mediaenc=srtp-mand").
	accountParams string
	account       string
	files         map[string]string
}

func startBaresipOpts(t *testing.T, srv *framework.Server, o baresipOptions, toneHz int, seconds int, commands ...string) *baresip {
	t.Helper()
	codecModule := o.codec
	if codecModule == "" {
		codecModule = "g711.so"
	}
	registrar := o.registrar
	if registrar == "" {
		registrar = srv.SIPAddr().String()
	}
	bin := requireBinary(t, "baresip", "apt-get install baresip-core")
	requireBinary(t, "sox", "apt-get install sox")
	dir := t.TempDir()
	b := &baresip{dir: dir, rec: filepath.Join(dir, "rec"), port: freeUDPPort(t), done: make(chan error, 1)}
	if err := os.MkdirAll(b.rec, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "mic.wav")
	// baresip's file source must match the codec's rate and channels.
	rate, channels := map[string]string{"g722.so": "16000", "opus.so": "48000"}[codecModule], "1"
	if rate == "" {
		rate = "8000"
	}
	if codecModule == "opus.so" {
		channels = "2" // opus/48000/2: baresip runs its audio in stereo
	}
	if out, err := exec.Command("sox", "-n", "-r", rate, "-c", channels, "-b", "16", src, "synth", fmt.Sprint(seconds+5), "sine", fmt.Sprint(toneHz), "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	config := fmt.Sprintf(`poll_method epoll
sip_listen 127.0.0.1:%d
audio_player aufile,/dev/null
audio_source aufile,%s
audio_alert aufile,/dev/null
module_path /usr/lib/baresip/modules
module %s
module aufile.so
module sndfile.so
module_app account.so
module_app menu.so
snd_path %s
%s
`, b.port, src, codecModule, b.rec, o.extraConfig)
	accounts := fmt.Sprintf("<sip:alice@%s>;auth_pass=s3cret;regint=60;answermode=auto%s\n", registrar, o.accountParams)
	if o.account != "" {
		accounts = o.account + "\n"
	}
	files := map[string]string{"config": config, "accounts": accounts}
	for name, body := range o.files {
		files[name] = body
	}
	for name, body := range files {
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

// expectHeard waits for baresip to exit and fails the test unless the
// loudest second it recorded is a tone of hz ± 20 Hz.
func (b *baresip) expectHeard(t *testing.T, hz float64) {
	t.Helper()
	if freq, rms := b.heard(t); rms < 300 || freq < hz-20 || freq > hz+20 {
		t.Fatalf("baresip heard %.0f Hz at rms %.0f, want %.0f Hz", freq, rms, hz)
	}
}

// expectTwoWay plays 1 kHz into call (connected to baresip) and fails
// the test unless the call hears baresip's toneHz and, once the call is
// hung up, baresip's recording holds the 1 kHz.
func (b *baresip) expectTwoWay(t *testing.T, call *testharness.Call, toneHz float64) {
	t.Helper()
	call.PlayTone(1000, 0)
	call.ExpectTone(toneHz)
	time.Sleep(1500 * time.Millisecond) // let baresip record a stretch of our tone
	call.End()
	b.expectHeard(t, 1000)
}

// logText returns what baresip has logged so far.
func (b *baresip) logText() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "baresip.log"))
	return string(out)
}

// freeUDPPort finds a port for a peer's SIP (baresip binds UDP and TCP on
// it, and TLS on the next one): free for UDP and TCP, and below the
// kernel's ephemeral range, where the many outgoing TCP connections of a
// test run would otherwise take the TCP half between the check and the
// peer's bind.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	return testharness.FreePortPair(t, 21000, 23000)
}

func waitRegistered(t *testing.T, srv *framework.Server, user string) {
	t.Helper()
	testharness.WaitUntil(t, 10*time.Second, user+" to register", func() bool { return len(srv.Agent().Registrar().Lookup(user)) > 0 })
}

// baresip registers with digest auth, calls a route, and hears its tone.
func TestBaresipRegistersCallsAndHearsTone(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
	}))
	b := startBaresip(t, srv, 440, 6, "/dial sip:tone@"+srv.SIPAddr().String())
	waitRegistered(t, srv, "alice")
	b.expectHeard(t, 1000)
}

// Wideband against an independent implementation: baresip with only its
// G.722 (or only its Opus) module calls the tone route; it must hear our
// 1 kHz through its decoder, and the flow must hear baresip's 440 Hz
// through ours.
func TestBaresipWidebandCodecs(t *testing.T) {
	for _, tc := range []struct{ module, codec string }{{"g722.so", "G722"}, {"opus.so", "opus"}} {
		t.Run(tc.codec, func(t *testing.T) {
			if tc.codec == "opus" {
				if err := codec.OpusAvailable(); err != nil {
					if os.Getenv("CI") != "" {
						t.Fatalf("libopus is required in CI (apt-get install libopus0): %v", err)
					}
					t.Skip(err)
				}
			}
			users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
			var heard440 atomic.Bool
			codecs := make(chan string, 1)
			srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
				if err := c.Answer(ctx); err != nil {
					return err
				}
				if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
					if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); dsp.RMS(f.Samples) > 500 && fr > 430 && fr < 450 {
						heard440.Store(true)
						select {
						case codecs <- fmt.Sprint(f.Rate):
						default:
						}
					}
					return nil
				})); err != nil {
					return err
				}
				return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
			}))
			b := startBaresipOpts(t, srv, baresipOptions{codec: tc.module}, 440, 6, "/dial sip:tone@"+srv.SIPAddr().String())
			waitRegistered(t, srv, "alice")
			b.expectHeard(t, 1000)
			if !heard440.Load() {
				t.Fatalf("the flow never heard baresip's 440 Hz over %s", tc.codec)
			}
			// The frames the flow got are at the codec's rate: wideband
			// was negotiated, not G.711.
			if rate := <-codecs; rate == "8000" {
				t.Fatalf("the call ran at 8 kHz, not %s", tc.codec)
			}
		})
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
	h := testharness.New(t, srv)
	b.expectTwoWay(t, h.Call("alice", testharness.HarnessCallOptions{Name: "the phone"}), 440)
}

// baresip over TLS: it registers (digest auth) and calls the tone route
// over TLS to the server's generated certificate, and hears the tone.
// (baresip 1.0 does not verify the server's certificate here, with or
// without sip_cafile; TestCallOverTLS covers verification.)
func TestBaresipOverTLS(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users, TLSAddr: "127.0.0.1:0"}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
	}))
	tlsURI := srv.TLSAddr().String() + ";transport=tls"
	b := startBaresipOpts(t, srv, baresipOptions{registrar: tlsURI}, 440, 6, "/dial sip:tone@"+tlsURI)
	waitRegistered(t, srv, "alice")
	if bs := srv.Agent().Registrar().Lookup("alice"); len(bs) != 1 || !strings.EqualFold(bs[0].Transport, "TLS") {
		t.Fatalf("alice's binding %+v, want one over TLS", bs)
	}
	b.expectHeard(t, 1000)
}

// baresip's RTCP and ours meet whichever way the ports are laid out:
// rtcp-mux offered and answered (all on the RTP port); no mux, RTCP on
// our RTP port as our a=rtcp says (RFC 3605, the default); no mux, and
// our RTCP on its own socket on the port above (Config.RTCPPortPair).
// After a 10 s call the CDR has the round trip measured from baresip's
// reports (the LSR/DLSR of our SRs: our SRs reached baresip and its RRs
// reached us) and MOS estimates for both directions.
func TestBaresipRTCPReportsInCDR(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mux, pair bool
	}{
		{name: "rtcp-mux", mux: true},
		{name: "a=rtcp on the RTP port"}, // nothing listens on the port above
		{name: "port pair", pair: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
			cdrs := make(chan framework.CDR, 1)
			// Reports every ~second from us, so baresip's RRs (about every 5 s)
			// carry the LSR of one of our SRs within the 10 s call.
			srv := startServer(t, framework.Config{Users: users, RTCPInterval: time.Second, RTCPPortPair: tc.pair, OnCallEnd: func(c framework.CDR) { cdrs <- c }},
				framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
					return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 30 * time.Second}))
				}))
			mux := "rtcp_mux\t\tno"
			if tc.mux {
				mux = "rtcp_mux\t\tyes"
			}
			b := startBaresipWith(t, srv, mux, 440, 10, "/dial sip:tone@"+srv.SIPAddr().String())
			waitRegistered(t, srv, "alice")
			b.expectHeard(t, 1000)
			var cdr framework.CDR
			select {
			case cdr = <-cdrs:
			case <-time.After(10 * time.Second):
				t.Fatal("no CDR")
			}
			m := cdr.Media
			t.Logf("CDR media: %+v", m)
			log, _ := os.ReadFile(filepath.Join(b.dir, "baresip.log"))
			if m.PacketsIn < 100 || m.RTTSamples == 0 || m.RTT < 0 || m.RTT > 100*time.Millisecond || m.RemoteLost != 0 ||
				m.MOS < 4.3 || m.RemoteMOS < 4.3 {
				t.Fatalf("CDR media %+v: want RTT measured from baresip's RTCP and clean MOS both ways\n%s", m, tail(log, 3000))
			}
			if muxed := bytes.Contains(log, []byte("multiplexing enabled")); muxed != tc.mux {
				t.Fatalf("baresip rtcp-mux enabled %v, want %v:\n%s", muxed, tc.mux, tail(log, 3000))
			}
			if bytes.Contains(log, []byte("drop incoming RTCP")) {
				t.Fatalf("baresip dropped our RTCP:\n%s", tail(log, 3000))
			}
		})
	}
}
