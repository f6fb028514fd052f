package testharness_test

import (
	"testing"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The echo app reflects the caller's packets: a 700 Hz tone comes back,
// then a 1200 Hz one (the echo follows what is said, it is not a
// recording), and RFC 4733 digits come back too.
func TestEchoReflectsAudioAndDigits(t *testing.T) {
	srv := startServer(t, framework.Config{}, apps.Echo(nil))
	h := testharness.New(t, srv)
	call := h.Call("echo", testharness.HarnessCallOptions{})
	call.PlayTone(700, 0)
	call.ExpectTone(700)
	call.PlayTone(1200, 0)
	call.ExpectTone(1200)
	call.Press("42")
	call.ExpectDigits("42")
	call.HangUp()
	h.ExpectIdle()
}
