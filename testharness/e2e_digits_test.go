package testharness_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Done means (d): CollectDigits and a Record with a stop digit running at
// the same time both see every digit (they used to race for them on one
// channel): CollectDigits gets "12" ended by "#", and the same "#" stops
// the recording. Both consumed the "#": a CollectDigits after them finds
// no type-ahead. Type-ahead still works: "7" pressed before the next
// CollectDigits is collected at once.
func TestCollectDigitsAndRecordDoNotRace(t *testing.T) {
	dir := t.TempDir()
	type result struct {
		digits string
		rec    time.Duration
		recErr error
		err    error
		after  error
		ahead  string
	}
	results := make(chan result, 1)
	ready := make(chan struct{})
	typed := make(chan struct{})
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		var res result
		defer func() { results <- res }()
		if err := c.Answer(ctx); err != nil {
			res.err = err
			return err
		}
		recDone := make(chan struct{})
		go func() {
			defer close(recDone)
			res.rec, res.recErr = c.Record(ctx, filepath.Join(dir, "rec.wav"), framework.RecordOptions{MaxDuration: 20 * time.Second})
		}()
		time.Sleep(200 * time.Millisecond) // let Record subscribe before the phone types
		close(ready)
		res.digits, res.err = c.CollectDigits(ctx, framework.CollectOptions{Max: 5, Terminators: "#", FirstDigitTimeout: 10 * time.Second})
		<-recDone
		_, res.after = c.CollectDigits(ctx, framework.CollectOptions{FirstDigitTimeout: 500 * time.Millisecond})
		close(typed) // the phone now types ahead
		time.Sleep(time.Second)
		res.ahead, _ = c.CollectDigits(ctx, framework.CollectOptions{FirstDigitTimeout: 10 * time.Millisecond})
		return nil
	}))
	h := testharness.New(t, srv)
	call := h.Call("digits", testharness.HarnessCallOptions{})
	<-ready
	call.Press("12#")
	testharness.Await(h, typed, "the flow to get past the first collection")
	call.Press("7")
	r := testharness.Await(h, results, "the flow to finish")
	call.End()
	if r.err != nil || r.digits != "12" {
		t.Errorf("CollectDigits = %q, %v; want 12", r.digits, r.err)
	}
	if r.recErr != nil || r.rec <= 0 || r.rec > 10*time.Second {
		t.Errorf("Record = %s, %v; want it stopped by #", r.rec, r.recErr)
	}
	if !errors.Is(r.after, framework.ErrNoInput) {
		t.Errorf("CollectDigits after both: %v, want ErrNoInput (the # was consumed)", r.after)
	}
	if r.ahead != "7" {
		t.Errorf("type-ahead: CollectDigits = %q, want 7", r.ahead)
	}
}
