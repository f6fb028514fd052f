package testharness

import (
	"errors"
	"testing"
)

// A browser call that never got its media up is named by the stage it
// stopped at.
func TestBrowserMediaFailure(t *testing.T) {
	closed := func() chan struct{} { c := make(chan struct{}); close(c); return c }
	open := func() chan struct{} { return make(chan struct{}) }
	for _, tc := range []struct {
		name                 string
		ice, connected, done chan struct{}
		err                  error
		want                 string
	}{
		{"connected", closed(), closed(), open(), nil, ""},
		{"no ICE", open(), open(), open(), nil, "ICE failed"},
		{"ICE but no DTLS", closed(), open(), open(), nil, "DTLS failed"},
		{"socket closed", open(), open(), closed(), errors.New("browser socket closed"), "ws closed"},
		{"hung up", closed(), open(), closed(), errors.New("remote hangup: busy"), "hung up by far end before media"},
	} {
		c := &browserCall{iceUp: tc.ice, connected: tc.connected, done: tc.done, err: tc.err}
		if got := c.mediaFailure(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
