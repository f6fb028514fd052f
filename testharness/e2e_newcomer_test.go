package testharness_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A voicemail plays a prompt, during which the caller presses "#" (to
// skip it, as people do); then Record starts. By default that "#" is
// type-ahead from before the recording and must not end it: the
// recording runs to MaxDuration (2 s; at least 1.2 s of audio even on a
// loaded machine, whose frames may lag). With KeepTypeAhead the same "#"
// ends it at once.
func TestRecordIgnoresTypeAhead(t *testing.T) {
	prompt := func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 1500 * time.Millisecond}))
	}
	flow, results := recordFlow(t.TempDir(), prompt, func(c *framework.Call) framework.RecordOptions {
		return framework.RecordOptions{MaxDuration: 2 * time.Second, KeepTypeAhead: c.User() == "keep"}
	})
	srv := startServer(t, framework.Config{}, flow)
	for _, tt := range []struct {
		route    string
		min, max time.Duration
	}{
		{route: "vm", min: 1200 * time.Millisecond, max: 2500 * time.Millisecond},
		{route: "keep", min: 0, max: 500 * time.Millisecond},
	} {
		t.Run(tt.route, func(t *testing.T) {
			h := testharness.New(t, srv)
			call := h.Call(tt.route, testharness.HarnessCallOptions{})
			call.ExpectTone(1000) // the prompt
			call.Press("#")       // during the prompt
			call.PlayTone(440, 0)
			r := testharness.Await(h, results, "Record to return")
			if r.err != nil || r.d < tt.min || r.d > tt.max {
				t.Fatalf("Record after a # typed during the prompt: %s, %v; want %s..%s", r.d, r.err, tt.min, tt.max)
			}
		})
	}
}

// Ringback follows the country: the server's Config.Ringback ("uk": 400
// and 450 Hz) unless the Dial names another ("us": 440 and 480 Hz). The
// caller is answered first, so it hears our ringback tone while the
// dialled phone rings.
func TestRingbackByCountry(t *testing.T) {
	callee := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499, AnswerDelay: 8 * time.Second})
	srv := startServer(t, framework.Config{Ringback: "uk"}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		opts := framework.DialOptions{Timeout: 10 * time.Second}
		if c.User() == "us" {
			opts.Ringback = "us"
		}
		return c.Dial(ctx, callee.URI("callee"), opts)
	}))
	for _, tt := range []struct {
		route string
		want  []float64
		other []float64
	}{
		{route: "uk", want: []float64{400, 450}, other: []float64{440, 480}},
		{route: "us", want: []float64{440, 480}, other: []float64{400, 450}},
	} {
		t.Run(tt.route, func(t *testing.T) {
			h := testharness.New(t, srv)
			h.Timeout = 6 * time.Second // within the first ring
			call := h.Call(tt.route, testharness.HarnessCallOptions{})
			ctx := h.Context()
			near := func(f float64, set []float64) bool {
				for _, w := range set {
					if math.Abs(f-w) <= 5 {
						return true
					}
				}
				return false
			}
			// Within the first ring (it starts with tone) the dominant
			// frequency is one of the country's pair, never the other's.
			l, err := call.WaitFor(ctx, 200*time.Millisecond, func(l testharness.Listen) bool {
				return l.RMS > 300 && (near(l.Frequency, tt.want) || near(l.Frequency, tt.other))
			})
			if err != nil {
				t.Fatalf("no ringback heard: %v", err)
			}
			if !near(l.Frequency, tt.want) {
				t.Fatalf("ringback at %.0f Hz, want one of %v (%s)", l.Frequency, tt.want, tt.route)
			}
		})
	}
	if _, err := framework.NewServer(framework.Config{Ringback: "xx"}, framework.HandlerFunc(func(context.Context, *framework.Call) error { return nil })); err == nil {
		t.Fatal("NewServer accepted ringback country xx")
	}
}

// The errors a newcomer prints read once: one "framework:" with the verb,
// the cause without a repeated prefix, and SIP failures as their status.
func TestErrorTextsReadOnce(t *testing.T) {
	busy := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41499, RejectCode: 486})
	errs := make(chan error, 4)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		_, err := c.CollectDigits(ctx, framework.CollectOptions{FirstDigitTimeout: 100 * time.Millisecond})
		errs <- err
		errs <- c.Dial(ctx, busy.URI("busy"), framework.DialOptions{Timeout: 5 * time.Second})
		errs <- c.Dial(ctx, "nobody", framework.DialOptions{})
		_, err = c.Record(ctx, filepath.Join(t.TempDir(), "r.wav"), framework.RecordOptions{})
		errs <- err
		return err
	}))
	h := testharness.New(t, srv)
	h.Own(busy)
	call := h.Call("errors", testharness.HarnessCallOptions{})
	want := []string{
		"framework: collect digits: no digits entered",
		"framework: dial " + busy.URI("busy") + ": 486 Busy Here",
		`framework: dial nobody: user not registered`,
		"framework: record: call hung up",
	}
	for i, w := range want {
		if i == len(want)-1 {
			time.Sleep(300 * time.Millisecond) // Record has started
			call.End()
		}
		if err := testharness.Await(h, errs, fmt.Sprintf("the flow's error %d", i)); err == nil || err.Error() != w {
			t.Errorf("error %d reads %q, want %q", i, err, w)
		}
	}
}

// The log says what happened: a registration as "registered", its removal
// as "unregistered" (not "registered contacts=0"), and a server without
// TLS "tls=off".
func TestLogLinesSayWhatHappened(t *testing.T) {
	var logs logBuffer
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users, Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return nil }))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := phone.Register(ctx, srv.SIPAddr().String(), "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := phone.Unregister(ctx, srv.SIPAddr().String(), "alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	// The server logs after it has answered: wait for the last line.
	unregistered := regexp.MustCompile(`msg="sip: unregistered" .*user=alice`)
	testharness.WaitUntil(t, 2*time.Second, "the unregistration's log line", func() bool { return unregistered.MatchString(logs.String()) })
	out := logs.String()
	for _, want := range []string{`msg="sip: registered" .*user=alice contacts=1`, `msg="sip: listening" .*tls=off`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"contacts=0", "invalid AddrPort"} {
		if strings.Contains(out, bad) {
			t.Errorf("log has %q:\n%s", bad, out)
		}
	}
}
