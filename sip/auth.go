package sip

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/icholy/digest"
)

// DigestAuth verifies SIP digest credentials (RFC 3261 section 22, RFC 8760
// for SHA-256). Nonces are self-validating (an HMAC over their issue time),
// expire after NonceTTL, and cannot be replayed: with qop=auth each nonce
// count may be used once and must grow; without qop a nonce is single-use.
type DigestAuth struct {
	Realm string
	// NonceTTL is how long a nonce is honoured (default 5 minutes).
	NonceTTL time.Duration
	// Algorithms are offered in this order, one challenge header each
	// (RFC 8760: most preferred first, e.g. {"SHA-256", "MD5"}). The
	// default offers MD5 alone: deployed clients choke on SHA-256
	// challenges — SIPp 3.6 takes the first header and refuses SHA-256,
	// baresip 1.0 fails the whole registration (ENOSYS) when any header
	// is SHA-256. Credentials computed with either algorithm are accepted
	// whatever is offered.
	Algorithms []string

	secret []byte
	now    func() time.Time

	mu   sync.Mutex
	used map[string]nonceUse
}

type nonceUse struct {
	nc      int
	expires time.Time
}

// NewDigestAuth returns a verifier for realm with a fresh random secret.
func NewDigestAuth(realm string) *DigestAuth {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return &DigestAuth{Realm: realm, NonceTTL: 5 * time.Minute, secret: secret, now: time.Now, used: map[string]nonceUse{}}
}

// Challenges returns the WWW-Authenticate (or Proxy-Authenticate) values
// for a new challenge, one per algorithm (RFC 8760 section 2.4). stale marks
// a challenge answering an expired nonce.
func (d *DigestAuth) Challenges(stale bool) []string {
	nonce := d.newNonce()
	algs := d.Algorithms
	if len(algs) == 0 {
		algs = []string{"MD5"}
	}
	out := make([]string, 0, len(algs))
	for _, alg := range algs {
		c := digest.Challenge{Realm: d.Realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		out = append(out, c.String())
	}
	return out
}

func (d *DigestAuth) newNonce() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(d.now().UnixNano()))
	_, _ = rand.Read(b[8:])
	m := hmac.New(sha256.New, d.secret)
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(append(b[:], m.Sum(nil)[:16]...))
}

// nonceState reports whether a nonce is ours and still fresh.
func (d *DigestAuth) nonceState(nonce string) (valid, fresh bool) {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 32 {
		return false, false
	}
	m := hmac.New(sha256.New, d.secret)
	m.Write(raw[:16])
	if !hmac.Equal(m.Sum(nil)[:16], raw[16:]) {
		return false, false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8])))
	return true, d.now().Sub(issued) < d.NonceTTL
}

// AuthResult is the outcome of Verify.
type AuthResult int

// Outcomes of Verify.
const (
	AuthOK      AuthResult = iota
	AuthMissing            // no credentials: challenge
	AuthStale              // our nonce, expired: challenge with stale=true
	AuthFailed             // wrong password, unknown user, replay or garbage
)

// Verify checks an Authorization header value for method against the
// password lookup. user is the authenticated user name on success.
func (d *DigestAuth) Verify(header, method string, password func(user string) (string, bool)) (user string, res AuthResult, why string) {
	if header == "" {
		return "", AuthMissing, ""
	}
	cred, err := digest.ParseCredentials(header)
	if err != nil {
		return "", AuthFailed, "unparsable credentials"
	}
	if cred.Realm != d.Realm {
		return cred.Username, AuthFailed, "wrong realm"
	}
	valid, fresh := d.nonceState(cred.Nonce)
	if !valid {
		return cred.Username, AuthFailed, "nonce not issued by us"
	}
	pass, ok := password(cred.Username)
	if !ok {
		return cred.Username, AuthFailed, "unknown user"
	}
	var h func() hash.Hash
	switch strings.ToUpper(cred.Algorithm) {
	case "", "MD5":
		h = md5.New
	case "SHA-256":
		h = sha256.New
	default:
		return cred.Username, AuthFailed, "unsupported algorithm " + cred.Algorithm
	}
	ha1 := hashHex(h, cred.Username, d.Realm, pass)
	ha2 := hashHex(h, method, cred.URI)
	var want string
	switch cred.QOP {
	case "auth":
		want = hashHex(h, ha1, cred.Nonce, fmt.Sprintf("%08x", cred.Nc), cred.Cnonce, "auth", ha2)
	case "":
		want = hashHex(h, ha1, cred.Nonce, ha2)
	default:
		return cred.Username, AuthFailed, "unsupported qop " + cred.QOP
	}
	if !hmac.Equal([]byte(strings.ToLower(cred.Response)), []byte(want)) {
		return cred.Username, AuthFailed, "wrong password"
	}
	if !fresh {
		return cred.Username, AuthStale, "nonce expired"
	}
	if !d.markUsed(cred.Nonce, cred.QOP == "auth", cred.Nc) {
		return cred.Username, AuthFailed, "nonce replayed"
	}
	return cred.Username, AuthOK, ""
}

func (d *DigestAuth) markUsed(nonce string, counted bool, nc int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if len(d.used) > 4096 {
		for k, u := range d.used {
			if now.After(u.expires) {
				delete(d.used, k)
			}
		}
	}
	u, seen := d.used[nonce]
	if seen && (!counted || nc <= u.nc) {
		return false
	}
	d.used[nonce] = nonceUse{nc: nc, expires: now.Add(d.NonceTTL)}
	return true
}

func hashHex(h func() hash.Hash, parts ...string) string {
	x := h()
	x.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(x.Sum(nil))
}

// FailureLimiter counts failed authentications and unknown-user requests
// per source address and blocks a source that fails too often: the
// scanners that find every public SIP port within minutes.
type FailureLimiter struct {
	// Max failures within Window before the source is blocked for Block.
	Max    int
	Window time.Duration
	Block  time.Duration

	mu    sync.Mutex
	now   func() time.Time
	state map[netip.Addr]*failures
}

type failures struct {
	count        int
	windowStart  time.Time
	blockedUntil time.Time
	logged       bool
}

// NewFailureLimiter blocks a source for 10 minutes after 10 failures in a
// minute.
func NewFailureLimiter() *FailureLimiter {
	return &FailureLimiter{Max: 10, Window: time.Minute, Block: 10 * time.Minute, now: time.Now, state: map[netip.Addr]*failures{}}
}

// Blocked reports whether src is blocked now.
func (l *FailureLimiter) Blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.state[src]
	return f != nil && l.now().Before(f.blockedUntil)
}

// Fail records a failure; it returns true the first time it blocks src (so
// the caller logs once).
func (l *FailureLimiter) Fail(src netip.Addr) (newlyBlocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.state) > 65536 {
		for k, f := range l.state {
			if now.After(f.blockedUntil) && now.Sub(f.windowStart) > l.Window {
				delete(l.state, k)
			}
		}
	}
	f := l.state[src]
	if f == nil {
		f = &failures{windowStart: now}
		l.state[src] = f
	}
	if now.Sub(f.windowStart) > l.Window {
		f.count, f.windowStart, f.logged = 0, now, false
	}
	f.count++
	if f.count >= l.Max && now.After(f.blockedUntil) {
		f.blockedUntil = now.Add(l.Block)
		if !f.logged {
			f.logged = true
			return true
		}
	}
	return false
}

// Succeed forgets src's failures.
func (l *FailureLimiter) Succeed(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.state, src)
}
