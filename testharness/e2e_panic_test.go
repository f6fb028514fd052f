package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// panicky is a Source and a Sink that panics on its nth frame.
type panicky struct {
	n    int
	src  media.Source
	seen int
}

func (p *panicky) ReadFrame(f *media.Frame) error {
	if p.seen++; p.seen == p.n {
		panic("source exploded")
	}
	return p.src.ReadFrame(f)
}

func (p *panicky) WriteFrame(*media.Frame) error {
	if p.seen++; p.seen == p.n {
		panic("sink exploded")
	}
	return nil
}

// Done means (c): a call flow, a Source and a Sink that panic each end
// only their own call — the phone gets a BYE, the CDR names the panic —
// while 20 other calls on the same server keep their audio (a 1 kHz tone
// measured at the phone on a sample of them, before and after).
func TestPanicsEndOnlyTheirOwnCall(t *testing.T) {
	tone := func(d time.Duration) media.Source {
		return audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: d})
	}
	r := framework.NewRouter()
	r.HandleFunc("tone", func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, tone(time.Minute))
	})
	r.HandleFunc("panic-flow", func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, tone(300*time.Millisecond)); err != nil {
			return err
		}
		var m map[string]int
		m["boom"]++ // a nil-map write: a real bug, not a panic() call
		return nil
	})
	r.HandleFunc("panic-source", func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, &panicky{n: 15, src: tone(time.Minute)})
	})
	r.HandleFunc("panic-sink", func(ctx context.Context, c *framework.Call) error {
		if err := c.Listen(ctx, &panicky{n: 15}); err != nil {
			return err
		}
		return c.Play(ctx, tone(time.Minute))
	})
	var mu sync.Mutex
	causes := map[string]string{}
	srv := startServer(t, framework.Config{CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1}, OnCallEnd: func(cdr framework.CDR) {
		mu.Lock()
		causes[cdr.User] = cdr.Cause
		mu.Unlock()
	}}, r)
	h := testharness.New(t, srv)
	const others = 20
	var calls []*testharness.Call
	for i := range others {
		calls = append(calls, h.Call("tone", testharness.HarnessCallOptions{Name: fmt.Sprintf("tone call %d", i)}))
	}
	sample := func(stage string) {
		t.Helper()
		for i := 0; i < others; i += 4 {
			c := calls[i]
			before := c.Mark()
			time.Sleep(250 * time.Millisecond)
			if c.Mark() <= before {
				t.Fatalf("%s: call %d hears nothing new", stage, i)
			}
			l := c.ExpectTone(1000)
			t.Logf("%s: call %d hears %.0f Hz at rms %.0f", stage, i, l.Frequency, l.RMS)
		}
	}
	sample("before the panics")

	for _, route := range []string{"panic-flow", "panic-source", "panic-sink"} {
		c := h.Call(route, testharness.HarnessCallOptions{Name: route})
		c.ExpectHangup()
		if !errors.Is(c.Leg.Err(), sip.ErrRemoteHangup) {
			t.Errorf("%s: phone's call ended with %v, want the server's BYE", route, c.Leg.Err())
		}
		want := "panic in " + strings.TrimPrefix(route, "panic-")
		if route == "panic-flow" {
			want = "panic in call flow"
		}
		h.Eventually(route+"'s CDR", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return causes[route] != ""
		})
		mu.Lock()
		got := causes[route]
		mu.Unlock()
		if got != want {
			t.Errorf("%s: CDR cause %q, want %q", route, got, want)
		}
	}
	if n := srv.ActiveCalls(); n != others {
		t.Fatalf("%d calls up after the panics, want %d", n, others)
	}
	sample("after the panics")
	for i, c := range calls {
		select {
		case <-c.Leg.Done():
			t.Fatalf("call %d ended: %v", i, c.Leg.Err())
		default:
		}
		c.End()
	}
	h.ExpectIdle()
	mu.Lock()
	defer mu.Unlock()
	if got := causes["tone"]; got != "remote hangup" {
		t.Errorf("tone calls ended with %q", got)
	}
	if len(causes) != 4 {
		t.Errorf("CDRs for %v", fmt.Sprint(causes))
	}
}
