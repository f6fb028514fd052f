package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a server on loopback with ephemeral SIP port and no HTTP.
func startServer(t *testing.T, cfg framework.Config, h framework.Handler) *framework.Server {
	t.Helper()
	srv, _ := startStoppableServer(t, cfg, h)
	return srv
}

// startStoppableServer is startServer for tests that stop the server
// themselves (restarts): stop shuts it down and waits; calling it again
// does nothing.
func startStoppableServer(t *testing.T, cfg framework.Config, h framework.Handler) (*framework.Server, func()) {
	t.Helper()
	if cfg.SIPAddr == "" {
		cfg.SIPAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "-"
	}
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 30000, 30999
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	srv, err := framework.NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return srv, testharness.Serve(t, srv)
}

func newPhone(t *testing.T) *testharness.Phone {
	t.Helper()
	return newPhoneWith(t, testharness.PhoneOptions{})
}

// newPhoneWith starts a harness phone with opts (logging to the test) and
// closes it when the test ends.
func newPhoneWith(t *testing.T, opts testharness.PhoneOptions) *testharness.Phone {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	p, err := testharness.NewPhone(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func uri(srv *framework.Server, user string) string {
	return fmt.Sprintf("sip:%s@%s", user, srv.SIPAddr())
}

// Done means 1: call ivr, hear the prompt, press 1, hear a 1 kHz tone.
func TestIVRPromptDigitTone(t *testing.T) {
	choices := make(chan string, 4)
	ivr := &apps.IVR{Prompts: apps.DemoPrompts(), OnChoice: func(c *framework.Call, d string) { choices <- d }}
	var events []framework.Event
	var mu sync.Mutex
	cdrs := make(chan framework.CDR, 1)
	srv := startServer(t, framework.Config{OnCallEnd: func(c framework.CDR) { cdrs <- c }, OnEvent: func(e framework.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}}, ivr)
	h := testharness.New(t, srv)
	call := h.Call("ivr", testharness.HarnessCallOptions{})
	call.ExpectSound() // the prompt
	call.Press("1")
	if d := testharness.Await(h, choices, "the handler to see the digit"); d != "1" {
		t.Fatalf("handler saw choice %q, want 1", d)
	}
	l := call.ExpectTone(1000)
	t.Logf("heard %.1f Hz at rms %.0f", l.Frequency, l.RMS)
	call.HangUp()
	h.ExpectIdle()
	cdr := testharness.Await(h, cdrs, "the CDR")
	if cdr.Cause != "remote hangup" || cdr.Duration <= 0 || cdr.Media.PacketsIn < 10 || cdr.Media.PacketsOut < 10 || cdr.Media.Lost != 0 ||
		cdr.Media.MOS < 4.3 || cdr.Media.MOS > 4.41 { // clean loopback G.711: E-model MOS ~4.4
		t.Errorf("CDR %+v", cdr)
	}
	// OnEvent runs off the server-wide stream in its own goroutine: it may
	// lag the CDR a little.
	testharness.WaitUntil(t, 5*time.Second, "the call.ended event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(events) > 0 && events[len(events)-1].Type == framework.EventCallEnded
	})
	mu.Lock()
	defer mu.Unlock()
	var sawDTMF, sawEnd bool
	for i, e := range events {
		if i > 0 && e.CallID == events[0].CallID && e.Seq != events[i-1].Seq+1 {
			t.Errorf("event seq gap: %d after %d", e.Seq, events[i-1].Seq)
		}
		sawDTMF = sawDTMF || (e.Type == framework.EventDTMF && e.Data.(framework.DTMFData).Digit == "1")
		sawEnd = sawEnd || e.Type == framework.EventCallEnded
	}
	if !sawDTMF || !sawEnd {
		t.Errorf("events: dtmf=%v call.ended=%v in %d events", sawDTMF, sawEnd, len(events))
	}
}

// Done means 3: the caller hangs up during Play; the handler gets
// ErrHangup; goroutines and sockets return to their baseline.
func TestHangupDuringPlayReleasesEverything(t *testing.T) {
	result := make(chan error, 4)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{440}, Duration: time.Minute}))
		result <- err
		return err
	}))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	oneCall := func() error {
		call, err := phone.Call(ctx, uri(srv, "play"))
		if err != nil {
			return err
		}
		if _, err := call.WaitTone(ctx, 440, 20); err != nil {
			return err
		}
		return call.Hangup(ctx)
	}
	// A first call warms up lazily started goroutines (timers, pools).
	if err := oneCall(); err != nil {
		t.Fatal(err)
	}
	<-result
	testharness.WaitUntil(t, 5*time.Second, "warm-up call to end", func() bool { return srv.ActiveCalls() == 0 })
	settle()
	baseG, baseFD := runtime.NumGoroutine(), openSockets(t)

	if err := oneCall(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("Play returned %v, want ErrHangup", err)
		}
	case <-ctx.Done():
		t.Fatal("handler's Play did not return after hangup")
	}
	testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
	// sipgo keeps finished transactions for their RFC 3261 timers; allow them
	// to expire but bound the wait.
	waitBaseline(t, baseG, baseFD, 40*time.Second)
}

// waitBaseline fails t unless the process's goroutines and sockets come
// back to baseG and baseFD within d, with every goroutine's stack.
func waitBaseline(t *testing.T, baseG, baseFD int, d time.Duration) {
	t.Helper()
	var g, fd int
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		g, fd = runtime.NumGoroutine(), openSockets(t)
		if g <= baseG && fd <= baseFD {
			return
		}
	}
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	t.Fatalf("leak: goroutines %d (baseline %d), sockets %d (baseline %d)\n%s", g, baseG, fd, baseFD, buf[:n])
}

// Done means 4: a malformed INVITE gets 400 and one offering only
// unsupported codecs gets 488; a normal call right after still works.
func TestBadInvitesThenGoodCall(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	target := srv.SIPAddr().String()
	invite := func(callID, extraHeaders, sdp string) string {
		return "INVITE sip:tone@" + target + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + callID + "\r\n" +
			"From: <sip:t@" + local + ">;tag=1\r\n" +
			"To: <sip:tone@" + target + ">\r\n" +
			"Call-ID: " + callID + "\r\n" +
			extraHeaders +
			"Contact: <sip:t@" + local + ">\r\n" +
			"Max-Forwards: 70\r\n" +
			"Content-Type: application/sdp\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sdp)) + sdp
	}
	goodSDP := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	cases := []struct {
		name, msg string
		want      int
	}{
		{"garbage CSeq", invite("bad1", "CSeq: one INVITE\r\n", goodSDP), 400},
		{"header without colon", invite("bad2", "CSeq: 1 INVITE\r\nThis is not a header\r\n", goodSDP), 400},
		{"Content-Length beyond body", strings.Replace(invite("bad3", "CSeq: 1 INVITE\r\n", goodSDP), fmt.Sprintf("Content-Length: %d", len(goodSDP)), "Content-Length: 900", 1), 400},
		{"missing Call-ID", strings.Replace(invite("bad4", "CSeq: 1 INVITE\r\n", goodSDP), "Call-ID: bad4\r\n", "", 1), 400},
		{"malformed SDP", invite("bad5", "CSeq: 1 INVITE\r\n", "this is not sdp\r\n"), 400},
		{"only G.729 offered", invite("bad6", "CSeq: 1 INVITE\r\n",
			"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"), 488},
		{"only SRTP offered", invite("bad7", "CSeq: 1 INVITE\r\n",
			"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n"), 488},
	}
	buf := make([]byte, 4096)
	for _, tc := range cases {
		if _, err := conn.WriteTo([]byte(tc.msg), net.UDPAddrFromAddrPort(srv.SIPAddr())); err != nil {
			t.Fatal(err)
		}
		got := 0
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		for got < 200 {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: no final response: %v", tc.name, err)
			}
			fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &got)
		}
		if got != tc.want {
			t.Errorf("%s: got %d, want %d\n%s", tc.name, got, tc.want, buf[:200])
		}
	}
	// The server still takes a normal call.
	testharness.New(t, srv).Call("tone", testharness.HarnessCallOptions{Name: "a normal call after bad input"}).ExpectTone(1000)
}

// Done means 2: a real SIPp UAC calls, sends PCMA audio from a pcap and an
// RFC 4733 digit, and hangs up; SIPp exits 0 and the server heard both.
func TestSIPpCallerWithPcapAudio(t *testing.T) {
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	heard := make(chan float64, 1)
	digits := make(chan string, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		var mu sync.Mutex
		var loud float64
		if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			mu.Lock()
			loud = max(loud, dsp.RMS(f.Samples))
			mu.Unlock()
			return nil
		})); err != nil {
			return err
		}
		d, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 1, FirstDigitTimeout: 10 * time.Second})
		digits <- d
		<-ctx.Done()
		mu.Lock()
		heard <- loud
		mu.Unlock()
		return err
	}))
	scenario, _ := filepath.Abs("testdata/sipp/uac_pcap_dtmf.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sf", scenario, "-s", "pcap", "-i", "127.0.0.1", "-p", "0",
		"-mp", "32000", "-m", "1", "-l", "1", "-timeout", "30s", "-nostdin", "-trace_err", "-error_file", filepath.Join(t.TempDir(), "err.log"),
		srv.SIPAddr().String())
	cmd.Dir = "/usr/share/sip-tester"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sipp failed: %v\n%s", err, tail(out, 3000))
	}
	select {
	case d := <-digits:
		if d != "1" {
			t.Errorf("server collected %q from SIPp's RFC 4733 pcap, want 1", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not collect a digit")
	}
	select {
	case loud := <-heard:
		if loud < 500 {
			t.Errorf("server heard only rms %.0f from SIPp's pcap audio", loud)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not see the hangup")
	}
}

func requireBinary(t *testing.T, name, install string) string {
	t.Helper()
	return testharness.RequireBinary(t, name, install)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func settle() { time.Sleep(300 * time.Millisecond) }

// openSockets counts this process's open sockets.
func openSockets(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
