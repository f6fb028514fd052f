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
		if l.Fail(ip, "") {
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

// Finding 5 of issue 13, at the limiter: the guessing patterns that used
// to run for ever, on a test clock. Each case reports after how many
// wrong guesses the source is first blocked and whether it is still
// blocked at the end.
func TestFailureLimiterPatterns(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.9")
	type step struct {
		user string
		ok   bool // a successful login instead of a failure
		gap  time.Duration
	}
	repeat := func(n int, s ...step) []step {
		var out []step
		for range n {
			out = append(out, s...)
		}
		return out
	}
	cases := []struct {
		name       string
		steps      []step
		wantBlock  bool
		blockedEnd bool // still blocked after the last step
	}{
		// 45 wrong alice passwords, a valid bob login after every 5: bob's
		// success must not clear alice's failures.
		{"mixed users", repeat(9, append(repeat(5, step{user: "alice", gap: time.Second}), step{user: "bob", ok: true, gap: time.Second})...), true, true},
		// 9 guesses a minute for an hour: a fixed one-minute window of 10
		// never blocked it.
		{"slow guesser", repeat(9*60, step{user: "alice", gap: time.Minute / 9}), true, true},
		// A user who mistypes 3 times an hour and then logs in is never
		// blocked.
		{"honest typos", repeat(8, step{user: "alice", gap: 20 * time.Minute}, step{user: "alice", gap: time.Second}, step{user: "alice", gap: time.Second}, step{user: "alice", ok: true, gap: time.Second}), false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := NewFailureLimiter()
			now := time.Unix(1e6, 0)
			l.now = func() time.Time { return now }
			firstBlock := 0
			fails := 0
			for _, s := range c.steps {
				now = now.Add(s.gap)
				if s.ok {
					if !l.Blocked(src) {
						l.Succeed(src, s.user)
					}
					continue
				}
				fails++
				l.Fail(src, s.user)
				if firstBlock == 0 && l.Blocked(src) {
					firstBlock = fails
				}
			}
			if (firstBlock > 0) != c.wantBlock {
				t.Fatalf("first blocked after %d failures; want blocked=%v", firstBlock, c.wantBlock)
			}
			if l.Blocked(src) != c.blockedEnd {
				t.Fatalf("blocked at the end = %v, want %v", l.Blocked(src), c.blockedEnd)
			}
			t.Logf("%d failures, first block after %d, blocked for %v at the end", fails, firstBlock, l.BlockedFor(src))
		})
	}
}

// A success clears that account's failures from that source only; blocks
// double while the source keeps failing; an account guessed at from many
// addresses refuses new sources but not the ones that logged in before.
func TestFailureLimiterAccounting(t *testing.T) {
	l := NewFailureLimiter()
	now := time.Unix(1e6, 0)
	l.now = func() time.Time { return now }
	src := netip.MustParseAddr("192.0.2.9")
	for range 9 {
		l.Fail(src, "alice")
	}
	l.Succeed(src, "alice")
	for range 9 {
		l.Fail(src, "carol")
	}
	if l.Blocked(src) {
		t.Fatal("alice's forgiven failures still counted")
	}
	l.Succeed(src, "bob")
	if l.Fail(src, "carol"); !l.Blocked(src) {
		t.Fatal("bob's success cleared carol's failures")
	}
	first := l.BlockedFor(src)
	now = now.Add(first + time.Second)
	for i := 0; i < 5 && !l.Blocked(src); i++ {
		l.Fail(src, "carol")
	}
	if l.BlockedFor(src) < 2*first-time.Second {
		t.Fatalf("second block %v, want double the first %v", l.BlockedFor(src), first)
	}

	home := netip.MustParseAddr("198.51.100.1")
	l.Succeed(home, "dave")
	for i := range 40 {
		l.Fail(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), "dave")
	}
	if !l.AccountLocked("dave", netip.MustParseAddr("203.0.113.200")) {
		t.Fatal("account guessed from 40 addresses is not locked against a new one")
	}
	if l.AccountLocked("dave", home) {
		t.Fatal("account locked against the source it logged in from")
	}
	if l.AccountLocked("erin", netip.MustParseAddr("203.0.113.200")) {
		t.Fatal("an untouched account is locked")
	}
}
