package testharness_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The contact-centre scenario file, shortened to 4 s of arrivals, against
// the demo IVR: every caller hears the menu and, after pressing 1, the
// 1 kHz tone; the report, CSV and SVG say so.
func TestLoadContactCentre(t *testing.T) {
	// One source places every call: lift the per-source guest limits.
	srv := startServer(t, framework.Config{CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1}}, &apps.IVR{Prompts: apps.DemoPrompts()})
	sc, err := testharness.LoadScenario("testdata/scenarios/contact-centre.scn")
	if err != nil {
		t.Fatal(err)
	}
	sc.Target = uri(srv, "ivr")
	sc.Duration, sc.Ramp, sc.Rate = 4*time.Second, time.Second, 2
	sc.Hold = testharness.Hold{Min: 6 * time.Second}
	var progress int
	rep, err := testharness.Run(context.Background(), sc, testharness.LoadOptions{RTPPortMin: 41000, RTPPortMax: 41999,
		Progress: func(testharness.Snapshot) { progress++ }})
	if err != nil {
		t.Fatal(err)
	}
	var txt bytes.Buffer
	rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	if rep.Attempted < 2 || rep.Answered != rep.Attempted || rep.Completed != rep.Attempted {
		t.Errorf("%d attempted, %d answered, %d completed; failures %v", rep.Attempted, rep.Answered, rep.Completed, rep.Failed)
	}
	for _, name := range []string{"menu", "tone"} {
		if v := rep.Checks[name]; v[0] != rep.Attempted {
			t.Errorf("%s heard by %d of %d callers", name, v[0], rep.Attempted)
		}
	}
	if rep.MOS < 4 || rep.SetupP50 <= 0 || rep.SetupMax < rep.SetupP99 {
		t.Errorf("MOS %.2f, setup p50 %s p99 %s max %s", rep.MOS, rep.SetupP50, rep.SetupP99, rep.SetupMax)
	}
	if progress == 0 {
		t.Error("no progress reported")
	}
	var csv, svg, js bytes.Buffer
	if err := rep.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	if len(lines) != rep.Attempted+1 || !strings.Contains(lines[0], "heard: menu,heard: tone") || !strings.HasSuffix(lines[1], ",yes,yes") {
		t.Errorf("CSV:\n%s", csv.String())
	}
	if err := rep.WriteSVG(&svg); err != nil || !strings.Contains(svg.String(), "<polyline") || !strings.HasSuffix(svg.String(), "</svg>\n") {
		t.Errorf("SVG (%v):\n%s", err, svg.String())
	}
	if err := rep.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"p95"`) {
		t.Errorf("JSON (%v)", err)
	}
}

// A target where nothing listens: Probe says connection refused at once,
// and a run gives up after the first calls fail instead of running on.
func TestLoadDeadTarget(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	err = testharness.Probe(context.Background(), addr, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("probe of a closed port: %v, want connection refused", err)
	}
	sc := &testharness.Scenario{Target: "sip:x@" + addr, Rate: 5, Duration: 30 * time.Second, SetupTimeout: 500 * time.Millisecond,
		Seed: 1, Steps: []testharness.Step{{Kind: testharness.StepExpectSound, Timeout: time.Second}}}
	rep, err := testharness.Run(context.Background(), sc, testharness.LoadOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	if !errors.Is(err, testharness.ErrTargetDead) {
		t.Fatalf("err %v, want ErrTargetDead", err)
	}
	if rep.Attempted > 10 || rep.Answered != 0 {
		t.Errorf("%d attempted, %d answered before giving up", rep.Attempted, rep.Answered)
	}
	t.Log(err)
}

// Done means 5: the load generator against SIPp's UAS (not our server):
// every call is answered and hears its own 1 kHz tone echoed by SIPp.
func TestLoadAgainstSIPpUAS(t *testing.T) {
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	port := freeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sn", "uas", "-rtp_echo", "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mp", "32400", "-nostdin")
	cmd.Dir = t.TempDir()
	var out testharness.LockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	testharness.WaitUDPBound(t, port, 10*time.Second)
	sc := &testharness.Scenario{Target: fmt.Sprintf("sip:load@127.0.0.1:%d", port), Rate: 2, Duration: 3 * time.Second,
		Hold: testharness.Hold{Min: 2 * time.Second}, Seed: 1, Steps: []testharness.Step{
			{Kind: testharness.StepPlayTone, Freq: 1000, Duration: time.Minute},
			{Kind: testharness.StepExpectTone, Freq: 1000, Timeout: 5 * time.Second, Name: "echo"},
		}}
	rep, err := testharness.Run(ctx, sc, testharness.LoadOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	if err != nil {
		t.Fatalf("%v\nsipp: %s", err, tail(out.Bytes(), 2000))
	}
	var txt bytes.Buffer
	rep.WriteText(&txt)
	t.Log("\n" + txt.String())
	if rep.Attempted < 5 || rep.Completed != rep.Attempted || rep.Checks["echo"][0] != rep.Attempted {
		t.Errorf("%d attempted, %d completed, echo heard %v; failures %v", rep.Attempted, rep.Completed, rep.Checks["echo"], rep.Failed)
	}
}

// Holding N calls up never exceeds N and replaces calls as they end; a
// Poisson run with the same seed starts the same calls at the same
// offsets (arrivals are drawn from the seed alone).
func TestLoadConcurrentAndSeeded(t *testing.T) {
	srv := startServer(t, framework.Config{CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1}}, apps.Tone(1000))
	opts := testharness.LoadOptions{RTPPortMin: 41000, RTPPortMax: 41999}
	sc := &testharness.Scenario{Target: uri(srv, "tone"), Arrival: testharness.ArrivalConcurrent, Concurrent: 3,
		Duration: 3 * time.Second, Hold: testharness.Hold{Min: time.Second}, Seed: 1,
		Steps: []testharness.Step{{Kind: testharness.StepExpectTone, Freq: 1000, Timeout: 3 * time.Second}}}
	rep, err := testharness.Run(context.Background(), sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	peak := 0
	for _, s := range rep.Series {
		peak = max(peak, s.Active)
	}
	if peak > 3 || rep.Attempted < 6 || rep.Completed != rep.Attempted {
		t.Errorf("concurrent 3 for 3 s with 1 s calls: peak %d, %d attempted, %d completed (%v)", peak, rep.Attempted, rep.Completed, rep.Failed)
	}

	poisson := &testharness.Scenario{Target: uri(srv, "tone"), Arrival: testharness.ArrivalPoisson, Rate: 4, Ramp: time.Second,
		Duration: 2 * time.Second, Hold: testharness.Hold{Mean: 500 * time.Millisecond}, Seed: 11, NoAudio: true}
	offsets := func() []time.Duration {
		rep, err := testharness.Run(context.Background(), poisson, opts)
		if err != nil {
			t.Fatal(err)
		}
		var o []time.Duration
		for _, c := range rep.Calls {
			o = append(o, c.Start.Sub(rep.Start))
		}
		return o
	}
	a, b := offsets(), offsets()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("same seed: %d calls then %d", len(a), len(b))
	}
	for i := range a {
		if d := a[i] - b[i]; d > 250*time.Millisecond || d < -250*time.Millisecond { // scheduling slack on a loaded box
			t.Errorf("call %d started at %s then %s", i+1, a[i], b[i])
		}
	}
}
