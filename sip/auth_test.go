package sip

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

func answer(t *testing.T, chal, user, pass, method, uri string, nc int) string {
	t.Helper()
	c, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: method, URI: uri, Username: user, Password: pass, Count: nc})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

func TestDigestAuthMD5AndSHA256(t *testing.T) {
	d := NewDigestAuth("switchboard")
	if c := d.Challenges(false); len(c) != 1 || !strings.Contains(c[0], "algorithm=MD5") {
		t.Fatalf("default challenge %q, want MD5 alone", c)
	}
	d.Algorithms = []string{"MD5", "SHA-256"}
	pw := func(u string) (string, bool) { return map[string]string{"alice": "s3cret"}[u], u == "alice" }
	chals := d.Challenges(false)
	if len(chals) != 2 || !strings.Contains(chals[0], "MD5") || !strings.Contains(chals[1], "SHA-256") {
		t.Fatalf("challenges %q", chals)
	}
	for i := range chals {
		chal := d.Challenges(false)[i] // both headers of one challenge share a nonce
		h := answer(t, chal, "alice", "s3cret", "REGISTER", "sip:127.0.0.1", 1)
		if u, res, why := d.Verify(h, "REGISTER", pw); res != AuthOK || u != "alice" {
			t.Fatalf("%s: %v %s", chal, res, why)
		}
		// The same nonce count again is a replay.
		if _, res, _ := d.Verify(h, "REGISTER", pw); res != AuthFailed {
			t.Fatalf("replay accepted: %v", res)
		}
		// A higher count on the same nonce is fine.
		if _, res, why := d.Verify(answer(t, chal, "alice", "s3cret", "REGISTER", "sip:127.0.0.1", 2), "REGISTER", pw); res != AuthOK {
			t.Fatalf("nc=2: %v %s", res, why)
		}
	}
	bad := []struct {
		name, header string
	}{
		{"wrong password", answer(t, d.Challenges(false)[0], "alice", "nope", "REGISTER", "sip:x", 1)},
		{"unknown user", answer(t, d.Challenges(false)[0], "mallory", "s3cret", "REGISTER", "sip:x", 1)},
		{"foreign nonce", answer(t, NewDigestAuth("switchboard").Challenges(false)[0], "alice", "s3cret", "REGISTER", "sip:x", 1)},
		{"garbage", "Digest ,,,=="},
		{"not digest", "Basic YWxpY2U6czNjcmV0"},
	}
	for _, b := range bad {
		if _, res, _ := d.Verify(b.header, "REGISTER", pw); res != AuthFailed {
			t.Errorf("%s: %v, want AuthFailed", b.name, res)
		}
	}
	if _, res, _ := d.Verify("", "REGISTER", pw); res != AuthMissing {
		t.Errorf("no header: %v", res)
	}
	// An expired nonce with the right password asks for a fresh challenge.
	h := answer(t, d.Challenges(false)[0], "alice", "s3cret", "REGISTER", "sip:x", 1)
	d.now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	if _, res, _ := d.Verify(h, "REGISTER", pw); res != AuthStale {
		t.Errorf("expired nonce: %v, want AuthStale", res)
	}
}

func TestFailureLimiter(t *testing.T) {
	l := NewFailureLimiter()
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	ip := netip.MustParseAddr("192.0.2.9")
	blocked := 0
	for range 12 {
		if l.Fail(ip) {
			blocked++
		}
	}
	if blocked != 1 || !l.Blocked(ip) {
		t.Fatalf("blocked %d times, Blocked=%v", blocked, l.Blocked(ip))
	}
	if l.Blocked(netip.MustParseAddr("192.0.2.10")) {
		t.Fatal("innocent source blocked")
	}
	now = now.Add(11 * time.Minute)
	if l.Blocked(ip) {
		t.Fatal("block did not expire")
	}
}
