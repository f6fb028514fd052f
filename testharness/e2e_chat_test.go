package testharness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Chat reaches every leg that carries it: with A bridged to B by Dial,
// the flow's SendMessage arrives at both phones as in-dialog MESSAGEs, and
// A's MESSAGE is passed on to B (not back to A).
func TestChatReachesEveryLeg(t *testing.T) {
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	appErr := make(chan error, 1)
	ready := make(chan struct{}) // both phones listen for chat
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		events := c.Events()
		go func() {
			for ev := range events {
				if ev.Type == framework.EventLegBridged {
					select {
					case <-ready:
					case <-ctx.Done():
					}
					appErr <- c.SendMessage(ctx, "from the app")
					return
				}
			}
		}()
		return c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	h := testharness.New(t, srv)
	h.Own(b)
	callA := h.Call("chat", testharness.HarnessCallOptions{Name: "A"})
	callB := h.ExpectIncoming(b, "B")
	close(ready)
	if err := testharness.Await(h, appErr, "the flow to send its message"); err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	callA.ExpectEvent(testharness.EventChat, "from the app")
	callB.ExpectEvent(testharness.EventChat, "from the app")
	if err := callA.Leg.SendChat(h.Context(), "hi bob"); err != nil {
		t.Fatal(err)
	}
	callB.ExpectEvent(testharness.EventChat, "hi bob")
	time.Sleep(300 * time.Millisecond)
	for _, e := range callA.Events() {
		if e.Kind == testharness.EventChat && e.Value != "from the app" {
			t.Fatalf("A got its own message back: %q", e.Value)
		}
	}
	callA.End()
	h.ExpectIdle()
}

// SIPp sends an application signal by INFO (application/json): a
// malformed body gets 400 and changes nothing, a valid one is a signal
// event on the call's stream, which the flow answers with a MESSAGE.
func TestSIPpInfoSignal(t *testing.T) {
	var mu sync.Mutex
	var signals []framework.SignalData
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		for ev := range c.Events() {
			if ev.Type != framework.EventSignal {
				continue
			}
			d := ev.Data.(framework.SignalData)
			mu.Lock()
			signals = append(signals, d)
			mu.Unlock()
			var p struct{ Count int }
			if err := json.Unmarshal(d.Payload, &p); err != nil {
				return err
			}
			if err := c.SendMessage(ctx, fmt.Sprintf("signal %s count=%d", d.Name, p.Count)); err != nil {
				return err
			}
		}
		return nil
	}))
	if out, err := runSIPp(t, "-sf", scenario("info_signal.xml"), "-s", "signal", "-mp", "32400", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(signals) != 1 || signals[0].Name != "buzz" || string(signals[0].Payload) != `{"count":3}` {
		t.Fatalf("signals %+v", signals)
	}
}
