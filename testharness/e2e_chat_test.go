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
	a := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	chatsA, chatsB := make(chan string, 4), make(chan string, 4)
	callA, err := a.Call(ctx, uri(srv, "chat"))
	if err != nil {
		t.Fatal(err)
	}
	callA.Leg.OnChat(func(_, text string) { chatsA <- text })
	var callB *testharness.PhoneCall
	select {
	case callB = <-b.Incoming():
	case <-ctx.Done():
		t.Fatal("B was never called")
	}
	callB.Leg.OnChat(func(_, text string) { chatsB <- text })
	close(ready)
	expect := func(who string, ch chan string, want string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Fatalf("%s got %q, want %q", who, got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%s never got %q", who, want)
		}
	}
	select {
	case err := <-appErr:
		if err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the flow never sent its message")
	}
	expect("A", chatsA, "from the app")
	expect("B", chatsB, "from the app")
	if err := callA.Leg.SendChat(ctx, "hi bob"); err != nil {
		t.Fatal(err)
	}
	expect("B", chatsB, "hi bob")
	select {
	case got := <-chatsA:
		t.Fatalf("A got its own message back: %q", got)
	case <-time.After(300 * time.Millisecond):
	}
	_ = callA.Hangup(ctx)
	testharness.WaitUntil(t, 5*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
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
