package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

func TestRelaySignature(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &relaySigner{key: []byte("0123456789abcdef-cluster")}
	other := &relaySigner{key: []byte("another-secret-of-16+")}
	good := s.sign("cluster-room-red", now)
	fresh := func() string { return s.sign("cluster-room-red", now) }
	for _, tc := range []struct {
		name, v, user string
		at            time.Time
		want          string // "" for accepted, else a part of the error
	}{
		{"valid", good, "cluster-room-red", now, ""},
		{"replayed", good, "cluster-room-red", now, "replayed"},
		{"another user", fresh(), "cluster-room-blue", now, "bad relay signature"},
		{"another key", other.sign("cluster-room-red", now), "cluster-room-red", now, "bad relay signature"},
		{"too old", fresh(), "cluster-room-red", now.Add(31 * time.Second), "old"},
		{"from the future", fresh(), "cluster-room-red", now.Add(-31 * time.Second), "old"},
		{"late but in the window", fresh(), "cluster-room-red", now.Add(29 * time.Second), ""},
		{"none", "", "cluster-room-red", now, "no X-Switchboard-Relay"},
		{"wrong version", "v2" + fresh()[2:], "cluster-room-red", now, "malformed"},
		{"three fields", "v1 1800000000 abc", "cluster-room-red", now, "malformed"},
		{"bad time", "v1 soon 0123456789abcdef01234567 mac", "cluster-room-red", now, "malformed time"},
		{"long mac", "v1 1800000000 0123456789abcdef01234567 " + strings.Repeat("A", 200), "cluster-room-red", now, "malformed"},
	} {
		err := s.verify(tc.v, tc.user, tc.at)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

func FuzzRelaySignature(f *testing.F) {
	s := &relaySigner{key: []byte("0123456789abcdef-cluster")}
	now := time.Unix(1_800_000_000, 0)
	f.Add(s.sign("cluster-room-red", now), "cluster-room-red")
	f.Add("v1 1800000000 0123456789abcdef01234567 x", "u")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, v, user string) {
		_ = s.verify(v, user, now) // must not panic; the nonce table stays bounded
		if len(s.seen) > maxRelayNonces {
			t.Fatalf("%d nonces remembered", len(s.seen))
		}
	})
}

// With a cluster secret, relays are taken on their signature, not their
// source: on loopback every caller comes from a member's address, so a
// phone calling the relay routes directly is refused (403) only because
// it cannot sign, while the nodes' own signed relays carry a room across
// them (a tone played on one node is heard on the other).
func TestSignedRelays(t *testing.T) {
	nodes := startCluster(t, "signed", "s", 2, nodeSpec{})
	// The remote port speaks TLS and takes only the secret's key.
	_, cli, err := remoteTLS([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := remoteTLS([]byte("not-the-cluster-secret-0123"))
	for _, tc := range []struct {
		cfg  *tls.Config
		want bool
	}{{cli, true}, {stranger, false}} {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", nodes[0].cluster, tc.cfg)
		if err == nil { // TLS 1.3: a refused client certificate shows on the first read
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			_, err = c.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				err = nil // still connected: taken
			}
			c.Close()
		}
		if got := err == nil; got != tc.want {
			t.Errorf("TLS to %s's remote port with the secret's key %v: %v", nodes[0].name, tc.want, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	phone := newPhone(t, 47000, 47999)
	forged := "v1 " + fmt.Sprint(time.Now().Unix()) + " 0123456789abcdef01234567 bm90LWEtbWFj"
	for _, h := range []map[string]string{nil, {RelayHeader: forged}} {
		for _, user := range []string{RoomUserPrefix + "red", CallUserPrefix + "x", UserUserPrefix + "alice"} {
			_, err := phone.Dial(ctx, "sip:"+user+"@"+nodes[0].sip, sip.DialOptions{FromUser: "harness", FromHost: testharness.GuestDomain, Headers: h})
			if err == nil || !strings.Contains(err.Error(), "403") {
				t.Errorf("a phone calling %s from 127.0.0.1 (headers %v): %v, want 403", user, h, err)
			}
		}
	}
	for _, why := range []string{"no X-Switchboard-Relay header", "bad relay signature"} { // rate-limited: not every refusal is logged
		if len(nodes[0].logLines("relay call without a valid signature refused", why)) == 0 {
			t.Errorf("no refusal logged for %q", why)
		}
	}
	var calls []*testharness.PhoneCall
	for _, n := range nodes {
		pc, err := phone.Call(ctx, "sip:room-green@"+n.sip)
		if err != nil {
			t.Fatalf("call room-green on %s: %v", n.name, err)
		}
		defer func() { _ = pc.Hangup(context.Background()) }()
		calls = append(calls, pc)
	}
	calls[0].Play(tone(900))
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if _, err := calls[1].WaitTone(wctx, 900, 20); err != nil {
		t.Errorf("the phone on %s does not hear the one on %s through the signed relay: %v", nodes[1].name, nodes[0].name, err)
	}
}

// callRelay has phone call a relay route (user, e.g. cluster-room-NAME)
// on a node directly, signed with the tests' cluster secret as a node
// would: a test's shortcut to put a phone into a node's own room.
func callRelay(ctx context.Context, phone *testharness.Phone, user, nodeSIP string) (*testharness.PhoneCall, error) {
	s := &relaySigner{key: []byte(testSecret)}
	return phone.Dial(ctx, "sip:"+user+"@"+nodeSIP, sip.DialOptions{FromUser: "harness", FromHost: testharness.GuestDomain,
		Headers: map[string]string{RelayHeader: s.sign(user, time.Now())}})
}
