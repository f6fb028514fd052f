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

// Attended transfer by REFER with Replaces: T talks to P1 (call 1) and to
// P2 (call 2), both through the server, then transfers P1 to P2 with a
// REFER on call 1 whose Refer-To replaces call 2. P1 and P2 then hear each
// other and both of T's legs end.
func TestAttendedTransferByReferReplaces(t *testing.T) {
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
	h := testharness.New(t, srv)
	h.Own(tp, p2, p1)
	call1P1, call1T := callAndAnswer(h, "t", p1, tp, 500, 900)
	call2T := h.Call("p2", testharness.HarnessCallOptions{Name: "T's call 2", Phone: tp})
	call2P2 := h.ExpectIncoming(p2, "P2")
	call2P2.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 5000}))
	call1P1.ExpectInMix("P1 hears T", 900, 0.5)
	call2T.ExpectInMix("T hears P2 on call 2", 1300, 0.5)

	rep, ok := call2T.Leg.Replaces()
	if !ok {
		t.Fatal("T's second call has no dialog tags")
	}
	if err := call1T.Leg.Refer(h.Context(), sip.ReferTarget(uri(srv, "p2"), rep)); err != nil {
		t.Fatalf("T's attended transfer: %v", err)
	}
	call1P1.ExpectInMix("P1 hears P2 after the transfer", 1300, 0.5)
	call2P2.ExpectInMix("P2 hears P1 after the transfer", 500, 0.5)
	call1T.End() // what a phone does after the 200 NOTIFY
	call1T.ExpectHangup()
	call2T.ExpectHangup()
	call1P1.End()
	call2P2.ExpectHangup() // P2's call ends after P1 hung up
	h.ExpectIdle()
}

// INVITE with Replaces: C takes over T's place in T's call with P1 (call
// pickup, or the last step of an attended transfer done by the phones):
// P1 hears C, and T's leg is hung up.
func TestInviteWithReplacesTakesTheLegsPlace(t *testing.T) {
	tp := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, tp.URI("t"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	h := testharness.New(t, srv)
	h.Own(tp)
	p1 := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	callP1, callT := callAndAnswer(h, "t", p1, tp, 500, 900)
	callP1.ExpectInMix("P1 hears T", 900, 0.5)

	rep, ok := callT.Leg.Replaces()
	if !ok {
		t.Fatal("T's call has no dialog tags")
	}
	c := h.Phone(testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	callC := h.Call("pickup", testharness.HarnessCallOptions{Name: "C, with Replaces,", Phone: c,
		Dial: &sip.DialOptions{FromUser: "c", FromHost: testharness.GuestDomain, Headers: map[string]string{"Replaces": rep.String()}}})
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{1300}, Amplitude: 5000}))
	callP1.ExpectInMix("P1 hears C", 1300, 0.5)
	callC.ExpectInMix("C hears P1", 500, 0.5)
	callT.ExpectHangup() // T's leg is replaced

	// A Replaces naming no dialog of ours is refused.
	bogus := sip.Replaces{CallID: "nope", ToTag: "a", FromTag: "b"}
	h.CallFails("pickup", testharness.HarnessCallOptions{Name: "an INVITE replacing an unknown dialog", Phone: c,
		Dial: &sip.DialOptions{FromUser: "c", FromHost: testharness.GuestDomain, Headers: map[string]string{"Replaces": bogus.String()}}})
	callP1.End()
	callC.ExpectHangup() // C's call ends after P1 hung up
	h.ExpectIdle()
}
