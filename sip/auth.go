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
	"math"
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
// and blocks what fails too often: the scanners that find every public SIP
// port within minutes, and password guessers however slowly they go.
//
// Each failure adds 1 to a score kept per source address, per account and
// per (account, source) pair; scores halve every HalfLife, so a burst and
// a slow steady guesser (9 a minute for ever) both reach Max. A source
// whose score reaches Max is blocked (every request answered 403) for
// Block, doubled for each further block while its score has not decayed
// (up to MaxBlock). A success clears only that account's failures from
// that source, never another account's. An account whose score reaches
// AccountMax (guessing from many addresses) refuses authentication from
// every source that has not authenticated as it within the last day.
type FailureLimiter struct {
	// Max is the score that blocks a source (default 10).
	Max int
	// AccountMax is the score that locks an account against new sources
	// (default 30).
	AccountMax int
	// HalfLife is how fast failures are forgotten (default 1 h).
	HalfLife time.Duration
	// Block is the first block of a source (default 10 min); MaxBlock
	// caps the doubling (default 24 h).
	Block, MaxBlock time.Duration

	mu       sync.Mutex
	now      func() time.Time
	sources  map[netip.Addr]*sourceFailures
	accounts map[string]*accountFailures
	pairs    map[pairKey]*score
}

type pairKey struct {
	src  netip.Addr
	user string
}

// score is a failure count that halves every half-life.
type score struct {
	v  float64
	at time.Time
}

func (s *score) value(now time.Time, halfLife time.Duration) float64 {
	if dt := now.Sub(s.at); dt > 0 && s.v > 0 {
		s.v *= math.Exp2(-dt.Seconds() / halfLife.Seconds())
	}
	s.at = now
	return s.v
}

type sourceFailures struct {
	score
	blockedUntil time.Time
	strikes      int // blocks so far, while the score has not decayed away
}

type accountFailures struct {
	score
	good map[netip.Addr]time.Time // sources that authenticated as the account
}

// NewFailureLimiter returns a limiter with the defaults above.
func NewFailureLimiter() *FailureLimiter {
	return &FailureLimiter{Max: 10, AccountMax: 30, HalfLife: time.Hour, Block: 10 * time.Minute, MaxBlock: 24 * time.Hour,
		now: time.Now, sources: map[netip.Addr]*sourceFailures{}, accounts: map[string]*accountFailures{}, pairs: map[pairKey]*score{}}
}

func (l *FailureLimiter) halfLife() time.Duration {
	if l.HalfLife <= 0 {
		return time.Hour
	}
	return l.HalfLife
}

// Blocked reports whether src is blocked now.
func (l *FailureLimiter) Blocked(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[src]
	return f != nil && l.now().Before(f.blockedUntil)
}

// AccountLocked reports whether user's account refuses authentication
// from src: it has been guessed at too often and src has not
// authenticated as user in the last day.
func (l *FailureLimiter) AccountLocked(user string, src netip.Addr) bool {
	if l.AccountMax <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.accounts[user]
	if a == nil {
		return false
	}
	now := l.now()
	if t, ok := a.good[src]; ok && now.Sub(t) < 24*time.Hour {
		return false
	}
	return a.value(now, l.halfLife())+0.5 >= float64(l.AccountMax)
}

// Fail records a failure from src, for user ("" when no account was
// named). It returns true when this failure blocks src (so the caller
// logs once per block).
func (l *FailureLimiter) Fail(src netip.Addr, user string) (newlyBlocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	hl := l.halfLife()
	if len(l.sources)+len(l.pairs)+len(l.accounts) > 1<<17 {
		l.pruneLocked(now)
	}
	f := l.sources[src]
	if f == nil {
		f = &sourceFailures{score: score{at: now}}
		l.sources[src] = f
	}
	if f.value(now, hl) < 1 {
		f.strikes = 0 // quiet long enough: start over
	}
	f.v++
	if user != "" {
		k := pairKey{src, user}
		p := l.pairs[k]
		if p == nil {
			p = &score{at: now}
			l.pairs[k] = p
		}
		p.value(now, hl)
		p.v++
		a := l.accounts[user]
		if a == nil {
			a = &accountFailures{score: score{at: now}}
			l.accounts[user] = a
		}
		a.value(now, hl)
		a.v++
	}
	max := l.Max
	if max <= 0 {
		max = 10
	}
	// Rounded: failures a few seconds apart have decayed a little.
	if f.v+0.5 < float64(max) || now.Before(f.blockedUntil) {
		return false
	}
	d := l.Block
	if d <= 0 {
		d = 10 * time.Minute
	}
	for range min(f.strikes, 16) {
		d *= 2
	}
	if l.MaxBlock > 0 && d > l.MaxBlock {
		d = l.MaxBlock
	}
	f.blockedUntil = now.Add(d)
	f.strikes++
	return true
}

// BlockedFor returns how long src stays blocked (0 when it is not).
func (l *FailureLimiter) BlockedFor(src netip.Addr) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[src]
	if f == nil {
		return 0
	}
	return max(f.blockedUntil.Sub(l.now()), 0)
}

// Succeed records that src authenticated as user: that account's failures
// from src are forgiven (and taken off src's score); failures for other
// accounts stay. src is remembered as a good source of the account.
func (l *FailureLimiter) Succeed(src netip.Addr, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	hl := l.halfLife()
	k := pairKey{src, user}
	if p := l.pairs[k]; p != nil {
		pv := p.value(now, hl)
		delete(l.pairs, k)
		if f := l.sources[src]; f != nil {
			f.v = max(f.value(now, hl)-pv, 0)
		}
		if a := l.accounts[user]; a != nil {
			a.v = max(a.value(now, hl)-pv, 0)
		}
	}
	if user == "" {
		return
	}
	a := l.accounts[user]
	if a == nil {
		a = &accountFailures{score: score{at: now}}
		l.accounts[user] = a
	}
	if a.good == nil {
		a.good = map[netip.Addr]time.Time{}
	}
	if len(a.good) >= 16 {
		for ip, t := range a.good {
			if now.Sub(t) > 24*time.Hour || len(a.good) >= 16 {
				delete(a.good, ip)
			}
		}
	}
	a.good[src] = now
}

// pruneLocked forgets entries that have decayed to nothing.
func (l *FailureLimiter) pruneLocked(now time.Time) {
	hl := l.halfLife()
	for k, f := range l.sources {
		if now.After(f.blockedUntil) && f.value(now, hl) < 0.5 {
			delete(l.sources, k)
		}
	}
	for k, p := range l.pairs {
		if p.value(now, hl) < 0.5 {
			delete(l.pairs, k)
		}
	}
	for k, a := range l.accounts {
		if a.value(now, hl) < 0.5 && len(a.good) == 0 {
			delete(l.accounts, k)
		}
	}
}
