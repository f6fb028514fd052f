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
