package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/switchboard-voice/switchboard/framework"
)

// The contact dialer leaves to local SIP what is not a plain user name of
// this cluster's: URIs, trunk calls, relay URIs, and dials UserHandler
// makes for another node (which must never bounce to a third node). It
// decides before asking any node (a nil Node would panic otherwise).
func TestContactDialerLeavesToLocalSIP(t *testing.T) {
	tests := []struct {
		name   string
		target string
		opts   framework.DialOptions
	}{
		{"sip URI", "sip:alice@example.com", framework.DialOptions{}},
		{"user@host", "alice@example.com", framework.DialOptions{}},
		{"trunk", "15551234567", framework.DialOptions{Trunk: "carrier"}},
		{"relay user", UserUserPrefix + "alice", framework.DialOptions{}},
		{"dial for another node", "alice", framework.DialOptions{Headers: map[string]string{relayHeader: "user"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := contactDialer{}.Dial(context.Background(), tc.target, tc.opts)
			if sig != nil || !errors.Is(err, framework.ErrNotFound) {
				t.Errorf("Dial(%q): %v, %v; want ErrNotFound", tc.target, sig, err)
			}
		})
	}
}
