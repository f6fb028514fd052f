package testharness_test

import (
	"errors"
	"testing"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The PBX basics: a phone registers as alice; a call to "alice" rings it
// and bridges; a user who is not registered gets 480; a wrong password is
// refused.
func TestExtensionsRegisteredPhones(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "pw-a"}, sip.Account{Name: "bob", Password: "pw-b"})
	srv := startServer(t, framework.Config{Users: users}, apps.Extensions(users, apps.Tone(1000)))
	h := testharness.New(t, srv)
	alice := h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	if err := alice.Register(h.Context(), srv.SIPAddr().String(), "alice", "wrong"); err == nil {
		t.Fatal("registration with a wrong password accepted")
	}
	h.Register(alice, "", "alice", "pw-a")
	call := h.Call("alice", testharness.HarnessCallOptions{Name: "the caller"})
	atAlice := h.ExpectIncoming(alice, "alice")
	call.ExpectTwoWayAudio(atAlice, 600, 1400)
	call.HangUp()
	atAlice.ExpectHangup() // alice's leg ends when the caller leaves

	err := h.CallFails("bob", testharness.HarnessCallOptions{})
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 480 {
		t.Fatalf("call to unregistered bob: %v, want 480", err)
	}
	// Names that are not users fall through to the other routes.
	h.Call("tone", testharness.HarnessCallOptions{}).ExpectTone(1000)
}
