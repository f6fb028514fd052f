package testharness

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseScenario(t *testing.T) {
	good := `# comment
target sip:ivr@127.0.0.1:5060
poisson 2.5   # mean rate
ramp 10s
duration 30s
hold exp 20s
max-calls 40
seed 9
downlink loss 5% jitter 40ms burst 2
expect sound 5s as menu
press 1#
play tone 440 1s
expect tone 1000 5s
expect silence 1s 3s
wait 2s
hangup
`
	sc, err := ParseScenario("good.scn", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Arrival != ArrivalPoisson || sc.Rate != 2.5 || sc.Ramp != 10*time.Second || sc.Duration != 30*time.Second ||
		sc.Hold.Mean != 20*time.Second || sc.MaxCalls != 40 || sc.Seed != 9 {
		t.Errorf("parsed %+v", sc)
	}
	if sc.Downlink.Loss != 0.05 || sc.Downlink.Jitter != 40*time.Millisecond || sc.Downlink.BurstLen != 2 || sc.Downlink.Seed != 9 {
		t.Errorf("downlink %+v", sc.Downlink)
	}
	kinds := []StepKind{StepExpectSound, StepPress, StepPlayTone, StepExpectTone, StepExpectSilence, StepWait, StepHangup}
	if len(sc.Steps) != len(kinds) {
		t.Fatalf("%d steps, want %d", len(sc.Steps), len(kinds))
	}
	for i, k := range kinds {
		if sc.Steps[i].Kind != k {
			t.Errorf("step %d is %s, want %s", i, sc.Steps[i].Kind, k)
		}
	}
	if s := sc.Steps[0]; s.Name != "menu" || s.Line != 10 || s.Timeout != 5*time.Second {
		t.Errorf("first step %+v", s)
	}
	if s := sc.Steps[3]; s.Freq != 1000 || s.String() != "tone 1000 Hz" {
		t.Errorf("tone step %+v", s)
	}

	bad := []struct {
		name, text string
		line       int
		want       string
	}{
		{"unknown", "target sip:a@b\nrate 1\njump 3\n", 3, `unknown statement "jump"`},
		{"bad duration", "target sip:a@b\nduration ten\n", 2, "not a duration"},
		{"bad digit", "target sip:a@b\npress 1x\n", 2, "not a DTMF digit"},
		{"bad freq", "target sip:a@b\nexpect tone 99999 5s\n", 2, "frequency"},
		{"no target", "rate 1\n", 1, "no target"},
		{"not a uri", "target ivr\n", 1, "not a sip: URI"},
		{"bad step", "target sip:a@b\nexpect nothing\n", 2, "bad step"},
		{"bad loss", "target sip:a@b\ndownlink loss 500%\n", 2, "percentage"},
		{"odd impairment", "target sip:a@b\ndownlink loss\n", 2, "KEY VALUE"},
		{"bad hold", "target sip:a@b\nhold 20s-10s\n", 2, "upper bound"},
		{"rate zero", "target sip:a@b\nrate 0\n", 2, "positive"},
		{"ramp too long", "target sip:a@b\nduration 5s\nramp 10s\n", 3, "ramp"},
		{"audio", "target sip:a@b\naudio maybe\n", 2, "on or off"},
		{"args", "target sip:a@b\nconcurrent\n", 2, "concurrent N"},
		{"browsers no percent", "target sip:a@b\nbrowsers 30 ws://h/ws\n", 2, "want a percentage"},
		{"browsers not ws", "target sip:a@b\nbrowsers 30% http://h/ws\n", 2, "not a ws:// or wss:// URL"},
		{"browsers args", "target sip:a@b\nbrowsers 30%\n", 2, "browsers PERCENT%"},
		{"browsers share", "target sip:a@b\nbrowsers 130% ws://h/ws\n", 2, "percentage"},
		{"browsers nobody to call", "browsers 100% ws://h/ws\nrate 1\n", 2, "route or user to call"},
		{"mixed without target", "browsers 50% ws://h/ws to tone\n", 1, "no target"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario("bad.scn", strings.NewReader(tc.text))
			var se *ScenarioError
			if !errors.As(err, &se) {
				t.Fatalf("err %v, want a ScenarioError", err)
			}
			if se.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %q (line %d), want line %d and %q", err, se.Line, tc.line, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "bad.scn:") {
				t.Errorf("err %q does not name the file", err)
			}
		})
	}
}

func TestParseScenarioBrowsers(t *testing.T) {
	for _, tc := range []struct {
		text        string
		share       float64
		ws, to, sip string
	}{
		{"target sip:ivr@127.0.0.1:5060\nbrowsers 30% ws://127.0.0.1:8080/ws\n", 0.3, "ws://127.0.0.1:8080/ws", "ivr", "sip:ivr@127.0.0.1:5060"},
		{"browsers 100% wss://pbx.example/ws to tone\n", 1, "wss://pbx.example/ws", "tone", ""},
		{"target sip:echo@h\nbrowsers 50% ws://h:80/ws to reflect\n", 0.5, "ws://h:80/ws", "reflect", "sip:echo@h"},
	} {
		sc, err := ParseScenario("b.scn", strings.NewReader(tc.text))
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if sc.Browsers.Share != tc.share || sc.Browsers.WS != tc.ws || sc.BrowserTo() != tc.to || sc.Target != tc.sip {
			t.Errorf("%q: %+v, calls %q", tc.text, sc.Browsers, sc.BrowserTo())
		}
	}
	// Browser callers are spread evenly and the share is exact.
	for _, tc := range []struct {
		share float64
		n     int
		want  int
	}{{0, 100, 0}, {0.3, 100, 30}, {0.5, 10, 5}, {1, 7, 7}, {0.25, 8, 2}} {
		b, got := BrowserCallers{Share: tc.share}, 0
		run, longest := 0, 0
		for id := 1; id <= tc.n; id++ {
			if b.browser(id) {
				got++
				run = 0
			} else if run++; run > longest {
				longest = run
			}
		}
		if got != tc.want {
			t.Errorf("share %v of %d callers: %d browsers, want %d", tc.share, tc.n, got, tc.want)
		}
		if tc.share > 0 && float64(longest) > 1/tc.share+1 {
			t.Errorf("share %v: %d SIP callers in a row", tc.share, longest)
		}
	}
}

func TestContactCentreScenarioFile(t *testing.T) {
	sc, err := LoadScenario("testdata/scenarios/contact-centre.scn")
	if err != nil {
		t.Fatal(err)
	}
	if sc.Arrival != ArrivalPoisson || len(sc.Steps) != 4 || sc.Steps[3].Name != "tone" {
		t.Errorf("parsed %+v", sc)
	}
}

func FuzzParseScenario(f *testing.F) {
	f.Add("target sip:a@b\nrate 1\nexpect tone 1000 5s as x\n")
	f.Add("target sip:a@b\nhold 1s-2s\ndownlink loss 5% jitter 40ms\n")
	f.Add("concurrent 5\n# x\npress *#\n")
	f.Add("target sip:a@b\nbrowsers 30% ws://h/ws to x\nrate 2\n")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScenario("fuzz", strings.NewReader(s))
		if err == nil {
			if verr := sc.Validate(); verr != nil {
				t.Fatalf("parsed scenario does not validate: %v", verr)
			}
		}
	})
}

func TestParseImpairment(t *testing.T) {
	im, err := ParseImpairment("loss 2.5% latency 30ms jitter 10ms reorder 1% duplicate 0.5% bandwidth 64kbps seed 3")
	if err != nil {
		t.Fatal(err)
	}
	want := Impairment{Seed: 3, Loss: 0.025, Latency: 30 * time.Millisecond, Jitter: 10 * time.Millisecond, Reorder: 0.01, Duplicate: 0.005, BandwidthKbps: 64}
	if im != want {
		t.Errorf("got %+v, want %+v", im, want)
	}
	if _, err := ParseImpairment("wobble 3"); err == nil {
		t.Error("unknown impairment accepted")
	}
}
