package testharness_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Voicemail: beep, record the caller until #, and the file holds the
// caller's 440 Hz; a second caller hangs up mid-recording and the file is
// still valid.
func TestRecordVoicemail(t *testing.T) {
	dir := t.TempDir()
	flow, results := recordFlow(dir, nil, func(*framework.Call) framework.RecordOptions {
		return framework.RecordOptions{MaxDuration: 10 * time.Second, Beep: true}
	})
	srv := startServer(t, framework.Config{}, flow)
	h := testharness.New(t, srv)
	call := h.Call("vm1", testharness.HarnessCallOptions{})
	call.ExpectTone(1000) // the beep
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}, Duration: 1500 * time.Millisecond}))
	time.Sleep(1600 * time.Millisecond)
	call.Press("#")
	r := testharness.Await(h, results, "Record to return")
	if r.err != nil || r.d < time.Second || r.d > 3*time.Second {
		t.Fatalf("record returned %s, %v", r.d, r.err)
	}
	call.End()
	if f := dominantInFile(t, filepath.Join(dir, "vm1.wav")); f < 430 || f > 450 {
		t.Fatalf("recording's dominant frequency %.0f Hz, want 440", f)
	}

	call2 := h.Call("vm2", testharness.HarnessCallOptions{})
	call2.PlayTone(700, 0)
	time.Sleep(1200 * time.Millisecond)
	call2.End()
	r = testharness.Await(h, results, "Record to return after the hangup")
	if !errors.Is(r.err, framework.ErrHangup) || r.d < 500*time.Millisecond {
		t.Fatalf("record after hangup: %s, %v", r.d, r.err)
	}
	if f := dominantInFile(t, filepath.Join(dir, "vm2.wav")); f < 690 || f > 710 {
		t.Fatalf("recording cut by hangup: %.0f Hz, want 700", f)
	}
}

// recordResult is what a flow's Record returned.
type recordResult struct {
	d   time.Duration
	err error
}

// recordFlow answers, runs before (if set), records the caller to
// dir/USER.wav with opts(c) and reports what Record returned on results.
func recordFlow(dir string, before func(context.Context, *framework.Call) error, opts func(*framework.Call) framework.RecordOptions) (framework.Handler, <-chan recordResult) {
	results := make(chan recordResult, 2)
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if before != nil {
			if err := before(ctx, c); err != nil {
				return err
			}
		}
		d, err := c.Record(ctx, filepath.Join(dir, c.User()+".wav"), opts(c))
		results <- recordResult{d, err}
		return err
	}), results
}

func dominantInFile(t *testing.T, path string) float64 {
	t.Helper()
	l, err := testharness.LoudestWindow(path, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return l.Frequency
}
