package testharness_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The PBX basics: a phone registers as alice; a call to "alice" rings it
// and bridges; a user who is not registered gets 480; a wrong password is
// refused.
func TestExtensionsRegisteredPhones(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "pw-a"}, sip.Account{Name: "bob", Password: "pw-b"})
	srv := startServer(t, framework.Config{Users: users}, apps.Extensions(users, apps.Tone(1000)))
	alice := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	registrar := srv.SIPAddr().String()
	if err := alice.Register(ctx, registrar, "alice", "wrong"); err == nil {
		t.Fatal("registration with a wrong password accepted")
	}
	if err := alice.Register(ctx, registrar, "alice", "pw-a"); err != nil {
		t.Fatalf("register: %v", err)
	}
	caller := newPhone(t)
	call, err := caller.Call(ctx, uri(srv, "alice"))
	if err != nil {
		t.Fatalf("call alice: %v", err)
	}
	var atAlice *testharness.PhoneCall
	select {
	case atAlice = <-alice.Incoming():
	case <-ctx.Done():
		t.Fatal("alice's phone never rang")
	}
	call.Play(audio.NewTone(audio.Tone{Freqs: []float64{600}}))
	atAlice.Play(audio.NewTone(audio.Tone{Freqs: []float64{1400}}))
	if _, err := atAlice.WaitTone(ctx, 600, 20); err != nil {
		t.Fatalf("alice does not hear the caller: %v", err)
	}
	if _, err := call.WaitTone(ctx, 1400, 20); err != nil {
		t.Fatalf("caller does not hear alice: %v", err)
	}
	_ = call.Hangup(ctx)
	select {
	case <-atAlice.Leg.Done():
	case <-ctx.Done():
		t.Fatal("alice's leg not hung up when the caller left")
	}

	_, err = caller.Call(ctx, uri(srv, "bob"))
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 480 {
		t.Fatalf("call to unregistered bob: %v, want 480", err)
	}
	// Names that are not users fall through to the other routes.
	other, err := caller.Call(ctx, uri(srv, "tone"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatal(err)
	}
	_ = other.Hangup(ctx)
}
