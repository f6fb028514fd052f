package testharness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// startLoadServer runs a server with browser legs, a 1 kHz tone route and
// the demo IVR, open to many guest calls from one source.
func startLoadServer(t *testing.T) *framework.Server {
	t.Helper()
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	r.Handle("ivr", &apps.IVR{Prompts: apps.DemoPrompts()})
	return startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1},
		Browsers: &framework.BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"}}, r)
}

// WebRTC load: 10 virtual browsers at 2 calls/s, each with its own
// WebSocket and token, call the tone route and must hear 1 kHz; every
// one does, and the report has set-up, first-audio and login figures.
// The same load expecting 600 Hz fails every call (the check can fail),
// a forged token fails at login, and after the runs the process is back
// to its goroutines and sockets.
func TestLoadBrowsers(t *testing.T) {
	srv := startLoadServer(t)
	ws := "ws://" + srv.HTTPAddr() + "/ws"
	sc := func(freq float64, timeout time.Duration) *testharness.Scenario {
		return &testharness.Scenario{Rate: 2, Duration: 5 * time.Second, Hold: testharness.Hold{Min: 2 * time.Second}, Seed: 1,
			Browsers: testharness.BrowserCallers{Share: 1, WS: ws, To: "tone"},
			Steps:    []testharness.Step{{Kind: testharness.StepExpectTone, Freq: freq, Timeout: timeout, Name: "tone"}}}
	}
	opts := testharness.LoadOptions{Tokens: srv.Tokens()}
	rep, err := testharness.Run(context.Background(), sc(1000, 5*time.Second), opts)
	if err != nil {
		t.Fatal(err)
	}
	var txt bytes.Buffer
	rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	if rep.Attempted != 10 || rep.Answered != 10 || rep.Completed != 10 || rep.Checks["tone"] != [2]int{10, 0} {
		t.Errorf("%d attempted, %d answered, %d completed, tone heard %v; failures %v", rep.Attempted, rep.Answered, rep.Completed, rep.Checks["tone"], rep.Failed)
	}
	wr := rep.Transports["webrtc"]
	if wr == nil || wr.Completed != 10 || len(rep.Transports) != 1 {
		t.Fatalf("transports %+v", rep.Transports)
	}
	if rep.SetupP50 <= 0 || rep.FirstAudioP50 <= rep.SetupP50 || wr.LoginMs["p50"] <= 0 || rep.MOS < 4 {
		t.Errorf("setup p50 %s, first audio p50 %s, login %v, MOS %.2f", rep.SetupP50, rep.FirstAudioP50, wr.LoginMs, rep.MOS)
	}
	for _, c := range rep.Calls {
		if c.Transport != testharness.TransportWebRTC {
			t.Errorf("call %d went over %s", c.ID, c.Transport)
		}
	}
	var js, csv bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"transport": "webrtc"`) || !strings.Contains(js.String(), `"first_audio_ms"`) {
		t.Errorf("JSON (%v): %.600s", err, js.String())
	}
	if err := rep.WriteCSV(&csv); err != nil || !strings.Contains(csv.String(), ",webrtc,") {
		t.Errorf("CSV (%v): %s", err, csv.String())
	}
	testharness.WaitUntil(t, 10*time.Second, "the browser calls to end", func() bool { return srv.ActiveCalls() == 0 })

	// The first run warmed up lazily started goroutines; now the baseline.
	settle := func() { time.Sleep(500 * time.Millisecond) }
	settle()
	baseG, baseFD := runtime.NumGoroutine(), openSockets(t)

	rep, err = testharness.Run(context.Background(), sc(600, 1500*time.Millisecond), opts)
	if err != nil {
		t.Fatal(err)
	}
	txt.Reset()
	rep.WriteText(&txt)
	t.Log("wrong tone expected:\n" + txt.String())
	if rep.Attempted != 10 || rep.Answered != 10 || rep.Completed != 0 || rep.Failed["not heard: tone"] != 10 || rep.Checks["tone"] != [2]int{0, 10} {
		t.Errorf("expecting 600 Hz from a 1 kHz route: %d attempted, %d answered, %d completed, failures %v", rep.Attempted, rep.Answered, rep.Completed, rep.Failed)
	}
	// A token the server refuses: the first callers fail at login, named
	// so, and the run stops as for a dead SIP target.
	rep, err = testharness.Run(context.Background(), sc(1000, time.Second), testharness.LoadOptions{BrowserToken: "forged"})
	if !errors.Is(err, testharness.ErrTargetDead) || rep.Answered != 0 || rep.Failed["login refused: 4003 bridge: invalid token: no signature"] != rep.Attempted {
		t.Errorf("forged token: %v, %d answered, failures %v", err, rep.Answered, rep.Failed)
	}
	testharness.WaitUntil(t, 10*time.Second, "the browser calls to end", func() bool { return srv.ActiveCalls() == 0 })
	waitBaseline(t, baseG, baseFD, 30*time.Second)
}

// A mixed population from a scenario file: half the callers are SIP
// phones, half browsers; all navigate the demo IVR (the browsers press 1
// with the page's "dtmf" message) and hear the menu and the tone.
func TestLoadMixedScenario(t *testing.T) {
	srv := startLoadServer(t)
	text := strings.NewReplacer("SIP", srv.SIPAddr().String(), "HTTP", srv.HTTPAddr()).Replace(`
target    sip:ivr@SIP
browsers  50% ws://HTTP/ws
rate      2
duration  2s
hold      4s
expect sound 5s          as menu
wait 500ms
press 1
expect tone 1000 5s      as tone
`)
	sc, err := testharness.ParseScenario("mixed.scn", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := testharness.Run(context.Background(), sc, testharness.LoadOptions{RTPPortMin: 41000, RTPPortMax: 41999, Tokens: srv.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	var txt bytes.Buffer
	rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	if rep.Attempted != 4 || rep.Completed != 4 {
		t.Errorf("%d attempted, %d completed; failures %v", rep.Attempted, rep.Completed, rep.Failed)
	}
	for _, k := range []string{"sip", "webrtc"} {
		if tt := rep.Transports[k]; tt == nil || tt.Attempted != 2 || tt.Completed != 2 {
			b, _ := json.Marshal(rep.Transports)
			t.Errorf("%s: %s", k, b)
		}
	}
	for _, name := range []string{"menu", "tone"} {
		if v := rep.Checks[name]; v[0] != 4 {
			t.Errorf("%s heard by %d of 4 callers", name, v[0])
		}
	}
}

// Browser callers on an impaired network (5 % loss, 40 ms jitter on the
// way to the browser, seeded): each still hears the tone, measures the
// loss, and the MOS estimate drops well below a clean call's (≥ 4 in
// TestLoadBrowsers).
func TestLoadBrowsersImpaired(t *testing.T) {
	srv := startLoadServer(t)
	sc := &testharness.Scenario{Rate: 2, Duration: 1500 * time.Millisecond, Hold: testharness.Hold{Min: 4 * time.Second}, Seed: 1,
		Browsers: testharness.BrowserCallers{Share: 1, WS: "ws://" + srv.HTTPAddr() + "/ws", To: "tone"},
		Downlink: testharness.Impairment{Seed: 42, Loss: 0.05, Jitter: 40 * time.Millisecond},
		Steps:    []testharness.Step{{Kind: testharness.StepExpectTone, Freq: 1000, Timeout: 5 * time.Second, Name: "tone"}}}
	rep, err := testharness.Run(context.Background(), sc, testharness.LoadOptions{Tokens: srv.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	var txt bytes.Buffer
	rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	if rep.Attempted != 3 || rep.Completed != 3 || rep.Checks["tone"][0] != 3 {
		t.Errorf("%d attempted, %d completed, tone heard %v; failures %v", rep.Attempted, rep.Completed, rep.Checks["tone"], rep.Failed)
	}
	for _, c := range rep.Calls {
		if c.LossPercent < 1 || c.LossPercent > 12 {
			t.Errorf("call %d measured %.1f %% loss through a 5 %% lossy link", c.ID, c.LossPercent)
		}
	}
	if rep.MOS <= 0 || rep.MOS > 3.9 {
		t.Errorf("MOS %.2f with 5 %% loss and 40 ms jitter, want below 3.9", rep.MOS)
	}
}
