package testharness_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// waitEnded waits for a harness call's leg to end.
func waitEnded(t *testing.T, pc *testharness.PhoneCall, what string) {
	t.Helper()
	select {
	case <-pc.Leg.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}

// Attended transfer by REFER with Replaces: T talks to P1 (call 1) and to
// P2 (call 2), both through the server, then transfers P1 to P2 with a
// REFER on call 1 whose Refer-To replaces call 2. P1 and P2 then hear each
// other and both of T's legs end.
func TestAttendedTransferByReferReplaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	p2 := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	p1 := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		target := tp.URI("t")
		if c.User() == "p2" {
			target = p2.URI("p2")
		}
		return c.Dial(ctx, target, framework.DialOptions{Timeout: 10 * time.Second})
	}))
	incoming := func(p *testharness.Phone, who string) *testharness.PhoneCall {
		select {
		case pc := <-p.Incoming():
			return pc
		case <-ctx.Done():
			t.Fatalf("%s was never called", who)
		}
		return nil
	}
	call1P1, err := p1.Call(ctx, uri(srv, "t"))
	if err != nil {
		t.Fatal(err)
	}
	call1T := incoming(tp, "T")
	call2T, err := tp.Call(ctx, uri(srv, "p2"))
	if err != nil {
		t.Fatal(err)
	}
	call2P2 := incoming(p2, "P2")
	call1P1.Play(audio.NewTone(audio.Tone{Freqs: []float64{500}, Amplitude: 5000}))
	call2P2.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 5000}))
	call1T.Play(audio.NewTone(audio.Tone{Freqs: []float64{900}, Amplitude: 5000}))
	waitShare(t, call1P1, "P1 hears T", 900, 0.5)
	waitShare(t, call2T, "T hears P2 on call 2", 1300, 0.5)

	rep, ok := call2T.Leg.Replaces()
	if !ok {
		t.Fatal("T's second call has no dialog tags")
	}
	if err := call1T.Leg.Refer(ctx, sip.ReferTarget(uri(srv, "p2"), rep)); err != nil {
		t.Fatalf("T's attended transfer: %v", err)
	}
	waitShare(t, call1P1, "P1 hears P2 after the transfer", 1300, 0.5)
	waitShare(t, call2P2, "P2 hears P1 after the transfer", 500, 0.5)
	_ = call1T.Hangup(ctx) // what a phone does after the 200 NOTIFY
	waitEnded(t, call1T, "T's call with P1")
	waitEnded(t, call2T, "T's call with P2")
	_ = call1P1.Hangup(ctx)
	waitEnded(t, call2P2, "P2's call after P1 hung up")
	waitFor(t, 5*time.Second, "calls to end", func() bool { return srv.ActiveCalls() == 0 })
}

// INVITE with Replaces: C takes over T's place in T's call with P1 (call
// pickup, or the last step of an attended transfer done by the phones):
// P1 hears C, and T's leg is hung up.
func TestInviteWithReplacesTakesTheLegsPlace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, tp.URI("t"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	p1 := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	callP1, err := p1.Call(ctx, uri(srv, "t"))
	if err != nil {
		t.Fatal(err)
	}
	var callT *testharness.PhoneCall
	select {
	case callT = <-tp.Incoming():
	case <-ctx.Done():
		t.Fatal("T was never called")
	}
	callP1.Play(audio.NewTone(audio.Tone{Freqs: []float64{500}, Amplitude: 5000}))
	callT.Play(audio.NewTone(audio.Tone{Freqs: []float64{900}, Amplitude: 5000}))
	waitShare(t, callP1, "P1 hears T", 900, 0.5)

	rep, ok := callT.Leg.Replaces()
	if !ok {
		t.Fatal("T's call has no dialog tags")
	}
	c := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	callC, err := c.Dial(ctx, uri(srv, "pickup"), sip.DialOptions{FromUser: "c", FromHost: testharness.GuestDomain, Headers: map[string]string{"Replaces": rep.String()}})
	if err != nil {
		t.Fatalf("C's INVITE with Replaces: %v", err)
	}
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 5000}))
	waitShare(t, callP1, "P1 hears C", 1300, 0.5)
	waitShare(t, callC, "C hears P1", 500, 0.5)
	waitEnded(t, callT, "T's replaced leg")

	// A Replaces naming no dialog of ours is refused.
	bogus := sip.Replaces{CallID: "nope", ToTag: "a", FromTag: "b"}
	if _, err := c.Dial(ctx, uri(srv, "pickup"), sip.DialOptions{FromUser: "c", FromHost: testharness.GuestDomain, Headers: map[string]string{"Replaces": bogus.String()}}); err == nil {
		t.Fatal("an INVITE replacing an unknown dialog was answered")
	}
	_ = callP1.Hangup(ctx)
	waitEnded(t, callC, "C's call after P1 hung up")
	waitFor(t, 5*time.Second, "calls to end", func() bool { return srv.ActiveCalls() == 0 })
}
