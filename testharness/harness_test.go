package testharness_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The scenario API in a few lines: call the demo IVR, hear the menu, press
// 1, hear the 1 kHz tone; the harness hangs up and checks for leaks.
func TestHarnessIVR(t *testing.T) {
	srv := startServer(t, framework.Config{}, &apps.IVR{Prompts: apps.DemoPrompts()})
	h := testharness.New(t, srv)
	c := h.Call("ivr", testharness.HarnessCallOptions{})
	c.ExpectSound()
	c.Press("1")
	c.ExpectTone(1000)
}

// Done means 2: 5 % loss and 40 ms jitter on the way to the phone lower the
// MOS estimate while the 1 kHz tone is still heard, and the same seed gives
// the same packet fates (and the same measured loss) twice.
func TestHarnessImpairmentMOS(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))
	h := testharness.New(t, srv)

	listen := func(down testharness.Impairment) (mos, lossPct float64, st testharness.LinkStats) {
		t.Helper()
		c := h.Call("tone", testharness.HarnessCallOptions{Downlink: down, Uplink: testharness.Impairment{Seed: 1}})
		defer c.End()
		c.ExpectTone(1000)
		time.Sleep(3 * time.Second) // 150 packets through the link
		es := c.Stats()
		if es.Expected == 0 {
			t.Fatal("no RTP received")
		}
		c.ExpectTone(1000)
		return c.MOS(), 100 * float64(es.Lost) / float64(es.Expected), c.Link.Stats(testharness.Downlink)
	}
	clean, cleanLoss, _ := listen(testharness.Impairment{Seed: 1})
	bad := testharness.Impairment{Seed: 42, Loss: 0.05, Jitter: 40 * time.Millisecond}
	mos1, loss1, st1 := listen(bad)
	mos2, loss2, st2 := listen(bad)
	t.Logf("clean: MOS %.2f loss %.1f%%; impaired (%s): MOS %.2f / %.2f, loss %.1f%% / %.1f%%, link lost %d of %d / %d of %d",
		clean, cleanLoss, bad, mos1, mos2, loss1, loss2, st1.Lost, st1.Received, st2.Lost, st2.Received)
	if clean < 4.2 {
		t.Errorf("MOS of the clean call %.2f, want ≥ 4.2", clean)
	}
	if mos1 > clean-0.3 || mos2 > clean-0.3 {
		t.Errorf("MOS with 5%% loss and 40 ms jitter %.2f / %.2f, want at least 0.3 below the clean call's %.2f", mos1, mos2, clean)
	}
	if loss1 < 2 || loss1 > 10 {
		t.Errorf("measured loss %.1f%%, want about 5%%", loss1)
	}
	n := min(len(st1.Fate), len(st2.Fate))
	if n < 100 || st1.Fate[:n] != st2.Fate[:n] {
		t.Errorf("same seed, different fates:\n%s\n%s", st1.Fate, st2.Fate)
	}
	if math.Abs(loss1-loss2) > 1.5 {
		t.Errorf("same seed, measured loss %.1f%% vs %.1f%%", loss1, loss2)
	}
	other := bad
	other.Seed = 43
	_, _, st3 := listen(other)
	if m := min(n, len(st3.Fate)); st3.Fate[:m] == st1.Fate[:m] {
		t.Errorf("seeds 42 and 43 gave the same fates")
	}
}

// recordingTB is a testing.TB whose failures and clean-ups are kept, to
// test that the harness's own checks fail when they should.
type recordingTB struct {
	testing.TB
	cleanups []func()
	errors   []string
}

func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Helper() {}
func (r *recordingTB) runCleanups() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// The leak check fails a test that leaves a goroutine and a socket behind,
// and passes one that does not.
func TestHarnessLeakCheck(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Tone(1000))

	clean := &recordingTB{TB: t}
	h := testharness.New(clean, srv)
	c := h.Call("tone", testharness.HarnessCallOptions{})
	c.ExpectTone(1000)
	clean.runCleanups()
	if len(clean.errors) != 0 {
		t.Errorf("a clean test was reported leaking: %v", clean.errors)
	}

	leaky := &recordingTB{TB: t}
	testharness.New(leaky, srv)
	stop := make(chan struct{})
	go func() { <-stop }()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leaky.runCleanups()
	close(stop)
	conn.Close()
	if len(leaky.errors) != 1 || !strings.Contains(leaky.errors[0], "leak:") {
		t.Errorf("a leaked goroutine and socket were not reported: %v", leaky.errors)
	}
}

// The audio verbs against the server's echo: a tone, a WAV file and
// speech come back, and the recording holds the tone.
func TestHarnessPlaySayRecord(t *testing.T) {
	requireBinary(t, "espeak-ng", "apt-get install espeak-ng")
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		return c.Echo(ctx)
	}))
	h := testharness.New(t, srv)
	c := h.Call("echo", testharness.HarnessCallOptions{})
	c.PlayTone(700, 2*time.Second)
	c.ExpectTone(700)
	dir := t.TempDir()
	rec := filepath.Join(dir, "heard.wav")
	c.Record(rec)
	if l, err := testharness.LoudestWindow(rec, 200*time.Millisecond); err != nil || l.Frequency < 680 || l.Frequency > 720 {
		t.Errorf("recording: %+v, %v; want 700 Hz", l, err)
	}
	wav := filepath.Join(dir, "tone.wav")
	tone := make([]int16, 16000) // 2 s of 1.5 kHz at 8 kHz
	for i := range tone {
		tone[i] = int16(8000 * math.Sin(2*math.Pi*1500*float64(i)/8000))
	}
	f, err := os.Create(wav)
	if err != nil {
		t.Fatal(err)
	}
	if err := audio.WriteWAV(f, 8000, tone); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c.PlayWAV(wav)
	c.ExpectTone(1500)
	c.ExpectSilence(300 * time.Millisecond)
	c.Say("hello from the test harness")
	c.ExpectSound()
}

// ExpectEvent sees digits, a chat message and the server's hangup.
func TestHarnessExpectEvent(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		if err := c.SendDTMF(ctx, "42", framework.SendDTMFOptions{}); err != nil {
			return err
		}
		if err := c.SendMessage(ctx, "hello phone"); err != nil {
			return err
		}
		return c.Hangup(ctx)
	}))
	h := testharness.New(t, srv)
	c := h.Call("events", testharness.HarnessCallOptions{})
	c.ExpectEvent(testharness.EventDigit, "4")
	c.ExpectEvent(testharness.EventDigit, "2")
	c.ExpectEvent(testharness.EventChat, "hello phone")
	c.ExpectEvent(testharness.EventHangup, "")
	c.ExpectDigits("42")
	c.ExpectHangup()
}
