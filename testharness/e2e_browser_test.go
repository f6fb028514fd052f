package testharness_test

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// startBrowserServer runs a server with browser legs on loopback.
func startBrowserServer(t *testing.T, h framework.Handler) *framework.Server {
	t.Helper()
	return startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0",
		Browsers: &framework.BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"}}, h)
}

// headlessChromium starts Debian's Chromium with a fake microphone
// playing wav (or its default beep when wav is ""), and returns a
// chromedp context for one tab.
func headlessChromium(t *testing.T, wav string) context.Context {
	t.Helper()
	requireBinary(t, "chromium", "apt-get install chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath("chromium"), chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	}
	if wav != "" {
		opts = append(opts, chromedp.Flag("use-file-for-fake-audio-capture", wav))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	return ctx
}

// pageNumber evaluates a numeric expression in the page.
func pageNumber(ctx context.Context, expr string) (float64, error) {
	return chromedp.Run[float64](ctx, chromedp.Evaluate[float64](expr))
}

// waitPageFreq waits until the page's analyser hears about freq Hz.
func waitPageFreq(t *testing.T, ctx context.Context, freq float64, what string) {
	t.Helper()
	var last float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		f, err := pageNumber(ctx, "window.switchboard ? window.switchboard.freq : 0")
		if err != nil {
			t.Fatalf("%s: reading the page: %v", what, err)
		}
		last = f
		if math.Abs(f-freq) < 40 {
			return
		}
	}
	t.Fatalf("%s: the page hears %.0f Hz, want ~%.0f", what, last, freq)
}

// The softphone page logs in with a token and calls `tone`: its WebAudio
// analyser hears ~1 kHz.
func TestBrowserPageHearsTone(t *testing.T) {
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	srv := startBrowserServer(t, r)
	ctx := headlessChromium(t, "")
	tok := srv.Tokens().MintFor("alice", time.Hour)
	page := fmt.Sprintf("http://%s/?token=%s&call=tone", srv.HTTPAddr(), url.QueryEscape(tok))
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitPageFreq(t, tctx, 1000, "page calling tone")
	legs := 0
	testharness.WaitUntil(t, 5*time.Second, "a browser leg on the server", func() bool { legs = srv.LiveLegs(); return legs == 1 })
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.getElementById("hangup").click(), true`)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitUntil(t, 10*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// A browser and a SIP phone in one call: Chromium's fake microphone plays
// a 440 Hz WAV, which the phone hears; the phone's 1300 Hz is heard in
// the page.
func TestBrowserCallsSIPPhone(t *testing.T) {
	requireBinary(t, "sox", "apt-get install sox")
	phone := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	srv := startBrowserServer(t, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, phone.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	wav := filepath.Join(t.TempDir(), "mic.wav")
	if out, err := exec.Command("sox", "-n", "-r", "48000", "-c", "1", "-b", "16", wav, "synth", "30", "sine", "440", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
	ctx := headlessChromium(t, wav)
	tok := srv.Tokens().MintFor("alice", time.Hour)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	page := fmt.Sprintf("http://%s/?token=%s&call=bob", srv.HTTPAddr(), url.QueryEscape(tok))
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	call := testharness.WaitIncoming(t, phone, 30*time.Second, "the SIP phone")
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 8000}))
	if _, err := call.WaitTone(tctx, 440, 25); err != nil {
		t.Fatalf("the SIP phone does not hear the browser's microphone: %v", err)
	}
	waitPageFreq(t, tctx, 1300, "the page hears the SIP phone")
	if path := os.Getenv("SWITCHBOARD_SCREENSHOT"); path != "" {
		// docs/softphone.png is this: the page in a live call with a SIP phone.
		if err := chromedp.Do(tctx, chromedp.EmulateViewport(900, 900)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // a quality reading and a level on the meter
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = call.Hangup(tctx)
	testharness.WaitUntil(t, 10*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// The page's WebSocket is closed mid-call and the page reconnects within
// the grace period: the tone goes on, and the event log (the flow signals
// ten times a second) has every event exactly once, with no gap.
func TestBrowserResumesAfterSocketDrop(t *testing.T) {
	r := framework.NewRouter()
	r.HandleFunc("ticker", func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		go func() {
			for i := 0; i < 600 && ctx.Err() == nil; i++ {
				_ = c.Signal(ctx, "tick", i)
				time.Sleep(100 * time.Millisecond)
			}
		}()
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 60 * time.Second}))
	})
	srv := startBrowserServer(t, r)
	ctx := headlessChromium(t, "")
	tok := srv.Tokens().MintFor("alice", time.Hour)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	page := fmt.Sprintf("http://%s/?token=%s&call=ticker", srv.HTTPAddr(), url.QueryEscape(tok))
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitPageFreq(t, tctx, 1000, "before the drop")
	var before float64
	for deadline := time.Now().Add(10 * time.Second); before < 5; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %v events before the drop", before)
		}
		before, _ = pageNumber(tctx, "window.switchboard.lastSeq")
	}
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.switchboard.ws.close(), true`)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, _ := pageNumber(tctx, "window.switchboard.reconnects")
		last, _ := pageNumber(tctx, "window.switchboard.lastSeq")
		if n >= 1 && last > before+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not resume: reconnects %v, last event %v (was %v)", n, last, before)
		}
	}
	waitPageFreq(t, tctx, 1000, "after the resume")
	gaps, err := chromedp.Run(tctx, chromedp.Evaluate[string](`(() => {
		const s = window.switchboard.seqs; const bad = [];
		for (let i = 0; i < s.length; i++) if (s[i] !== i + 1) bad.push(i + ":" + s[i]);
		return bad.slice(0, 5).join(",") + "|dups=" + window.switchboard.dups + "|n=" + s.length;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(gaps, "|dups=0|") {
		t.Fatalf("the event log is not every event exactly once: %s", gaps)
	}
	t.Logf("events after the resume: %s", gaps)
	if srv.ActiveCalls() != 1 {
		t.Fatalf("active calls after the resume: %d", srv.ActiveCalls())
	}
}

// A SIP phone calls a browser user: the flow dials "alice", which rings
// the page logged in as alice (forked with SIP, where alice has no phone);
// the page answers and both hear each other.
func TestSIPPhoneCallsBrowserUser(t *testing.T) {
	requireBinary(t, "sox", "apt-get install sox")
	srv := startBrowserServer(t, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 20 * time.Second})
	}))
	wav := filepath.Join(t.TempDir(), "mic.wav")
	if out, err := exec.Command("sox", "-n", "-r", "48000", "-c", "1", "-b", "16", wav, "synth", "30", "sine", "600", "vol", "0.5").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
	ctx := headlessChromium(t, wav)
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	page := fmt.Sprintf("http://%s/?token=%s&answer=1", srv.HTTPAddr(), url.QueryEscape(srv.Tokens().MintFor("alice", time.Hour)))
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if ok, _ := chromedp.Run(tctx, chromedp.Evaluate[bool](`!!(window.switchboard && window.switchboard.user)`)); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the page did not log in")
		}
	}
	phone := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	call, err := phone.Call(tctx, uri(srv, "alice"))
	if err != nil {
		t.Fatalf("the SIP phone's call to alice: %v", err)
	}
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 8000}))
	if _, err := call.WaitTone(tctx, 600, 25); err != nil {
		t.Fatalf("the SIP phone does not hear the browser: %v", err)
	}
	waitPageFreq(t, tctx, 1300, "the page hears the SIP phone")
	_ = call.Hangup(tctx)
	testharness.WaitUntil(t, 10*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// The page and a SIP phone in one call share more than audio: a digit
// pressed on the page reaches the flow, chat typed on the page reaches
// the phone as a MESSAGE and the phone's MESSAGE shows in the page's chat
// pane, and the page's roster shows the phone's user's presence
// (available when registered, on-call during the call).
func TestBrowserDTMFChatAndPresence(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "bob", Password: "s3cret"})
	digits := make(chan string, 8)
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", Users: users,
		Browsers: &framework.BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"},
		OnEvent: func(ev framework.Event) {
			if d, ok := ev.Data.(framework.DTMFData); ok && ev.Type == framework.EventDTMF {
				digits <- d.Digit
			}
		}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "bob", framework.DialOptions{Timeout: 20 * time.Second})
	}))
	ctx := headlessChromium(t, "")
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	bob := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	if err := bob.Register(tctx, srv.SIPAddr().String(), "bob", "s3cret"); err != nil {
		t.Fatalf("bob registers: %v", err)
	}
	page := fmt.Sprintf("http://%s/?token=%s", srv.HTTPAddr(), url.QueryEscape(srv.Tokens().MintFor("alice", time.Hour)))
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		s, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`(window.switchboard && window.switchboard.roster.bob) || ""`))
		return s
	}
	testharness.WaitUntil(t, 10*time.Second, "the roster to show bob available", func() bool { return status() == "available" })
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.getElementById("target").value = "bob", document.getElementById("call").click(), true`)); err != nil {
		t.Fatal(err)
	}
	call := testharness.WaitIncoming(t, bob, 30*time.Second, "bob's phone")
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 8000}))
	waitPageFreq(t, tctx, 1300, "the page hears bob")
	testharness.WaitUntil(t, 10*time.Second, "the roster to show bob on a call", func() bool { return status() == "on-call" })

	// A digit from the page's keypad reaches the flow.
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`[...document.querySelectorAll("#pad button")].find(b => b.textContent === "5").click(), true`)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-digits:
		if d != "5" {
			t.Fatalf("the flow got digit %q, want 5", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the page's digit did not reach the flow")
	}
	// Chat, page → phone (SIP MESSAGE) and phone → page.
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`document.getElementById("text").value = "hello bob", document.getElementById("send").click(), true`)); err != nil {
		t.Fatal(err)
	}
	testharness.WaitUntil(t, 5*time.Second, "bob's phone to get the page's chat", func() bool {
		for _, ev := range call.Events() {
			if ev.Kind == testharness.EventChat && ev.Value == "hello bob" {
				return true
			}
		}
		return false
	})
	if err := call.Leg.SendChat(tctx, "hi alice"); err != nil {
		t.Fatalf("bob's MESSAGE: %v", err)
	}
	testharness.WaitUntil(t, 5*time.Second, "the page's chat pane to show bob's message", func() bool {
		s, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.getElementById("messages").textContent`))
		return strings.Contains(s, "hi alice")
	})
	_ = call.Hangup(tctx)
	testharness.WaitUntil(t, 10*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
	testharness.WaitUntil(t, 10*time.Second, "the roster to show bob available again", func() bool { return status() == "available" })
}

// The softphone page follows its call's leg into a room: it gets
// `moved`, takes room:sales as its session and shows the room's events
// (a second member arriving); after its socket drops it resumes with the
// room and its last Seq there and shows every later room event once.
func TestBrowserPageFollowsMove(t *testing.T) {
	r := framework.NewRouter()
	r.HandleFunc("park", func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	})
	srv := startBrowserServer(t, r)
	ctx := headlessChromium(t, "")
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	page := fmt.Sprintf("http://%s/?token=%s&call=park", srv.HTTPAddr(), url.QueryEscape(srv.Tokens().MintFor("alice", time.Hour)))
	if err := chromedp.Do(tctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	pageString := func(expr string) string {
		s, _ := chromedp.Run[string](tctx, chromedp.Evaluate[string](expr))
		return s
	}
	var leg string
	testharness.WaitUntil(t, 20*time.Second, "the page's call answered", func() bool {
		leg = pageString(`window.switchboard.call || ""`)
		return leg != "" && pageString(`window.switchboard.session`) == leg
	})
	if err := srv.Move(tctx, leg, framework.ToRoom("sales"), framework.JoinOptions{}); err != nil {
		t.Fatal(err)
	}
	// A second member: a call held in memory, moved in too.
	join := func(name string) {
		m, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "park", From: "sip:" + name + "@memory"})
		srv.StartCall(m)
		t.Cleanup(func() { _ = m.Hangup(context.Background()) })
		testharness.WaitUntil(t, 5*time.Second, name+" answered", m.Answered)
		if err := srv.Move(tctx, m.ID(), framework.ToRoom("sales"), framework.JoinOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	join("bob")
	testharness.WaitUntil(t, 10*time.Second, "the page in room:sales with bob's arrival", func() bool {
		return pageString(`window.switchboard.session`) == "room:sales" && pageString(`String(window.switchboard.lastSeq)`) == "2"
	})
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[bool](`window.switchboard.ws.close(), true`)); err != nil {
		t.Fatal(err)
	}
	join("carol") // while the page is away (or reconnecting)
	testharness.WaitUntil(t, 15*time.Second, "the page resumed with carol's arrival", func() bool {
		n, _ := pageNumber(tctx, "window.switchboard.reconnects")
		return n >= 1 && pageString(`String(window.switchboard.lastSeq)`) == "3"
	})
	// The call's three events (call.started, leg.answered, leg.moved),
	// then the room's: alice's and bob's arrival, and after the resume
	// only carol's (a resume without the session would replay the room).
	if got := pageString(`window.switchboard.session + "|dups=" + window.switchboard.dups + "|" + window.switchboard.seqs.join(",")`); got != "room:sales|dups=0|1,2,3,1,2,3" {
		t.Fatalf("after the resume the page has %s, want room:sales|dups=0|1,2,3,1,2,3", got)
	}
}
