package sip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/presence"
)

// Binding is one registered contact of a user.
type Binding struct {
	User    string
	Contact string         // the Contact URI as registered
	Source  netip.AddrPort // where the REGISTER came from: where requests go (NAT)
	// Transport the phone registered over ("UDP", "TCP", "TLS", "WS"):
	// requests to it go over the same connection while it is open.
	Transport string
	Expires   time.Time
	CallID    string
	CSeq      uint32
	// Path is the REGISTER's Path header values, outermost first (RFC
	// 3327): the proxies between the registrar and the phone (Kamailio in
	// front of the nodes). Requests to the contact carry them as a
	// preloaded route set.
	Path []string `json:",omitempty"`
}

// Registrar is the location service: REGISTER with digest authentication
// binds a user's contacts; Lookup returns the live ones.
type Registrar struct {
	Directory *Directory
	Auth      *DigestAuth
	Limiter   *FailureLimiter
	// MinExpires and MaxExpires bound registration lifetimes (60 s, 3600 s).
	MinExpires, MaxExpires time.Duration
	// MaxContacts per user (10).
	MaxContacts int
	// Presence, if set, hears how many contacts each user has registered
	// (source "sip"): the first makes the user online, losing the last
	// (unregistered or expired) offline.
	Presence *presence.Store
	// Domains are host names that mean this server in a From URI (beside
	// the realm, "localhost" and this host's IP addresses): a caller
	// whose From names one of them claims a local account and must
	// authenticate (see InviteAuthKnownUsers).
	Domains []string

	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	bindings map[string][]Binding
	reported map[string]int // contacts last told to Presence
}

// NewRegistrar creates a registrar for the accounts of dir in realm.
func NewRegistrar(dir *Directory, realm string, log *slog.Logger) *Registrar {
	if log == nil {
		log = slog.Default()
	}
	return &Registrar{Directory: dir, Auth: NewDigestAuth(realm), Limiter: NewFailureLimiter(),
		MinExpires: 60 * time.Second, MaxExpires: time.Hour, MaxContacts: 10,
		log: log, now: time.Now, bindings: map[string][]Binding{}}
}

// Lookup returns the unexpired bindings of user, newest first.
func (r *Registrar) Lookup(user string) []Binding {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.liveLocked(user)
}

func (r *Registrar) liveLocked(user string) []Binding {
	now := r.now()
	bs := r.bindings[user][:0:0]
	for _, b := range r.bindings[user] {
		if now.Before(b.Expires) {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		delete(r.bindings, user)
	} else {
		r.bindings[user] = bs
	}
	out := append([]Binding(nil), bs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.After(out[j].Expires) })
	return out
}

// serveRegister handles one REGISTER request.
func (r *Registrar) serveRegister(req *sip.Request, tx sip.ServerTransaction) {
	src, _ := netip.ParseAddrPort(req.Source())
	srcIP := src.Addr().Unmap()
	log := r.log.With("source", req.Source(), "call_id", callIDOf(req))
	respond := func(code int, reason string, hdrs ...sip.Header) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := tx.Respond(res); err != nil {
			log.Debug("sip: REGISTER response failed", "error", err)
		}
	}
	if r.Limiter.Blocked(srcIP) {
		respond(403, "Forbidden")
		return
	}
	if code, problem := validateRequest(req); code != 0 {
		log.Warn("sip: bad REGISTER", "problem", problem)
		respond(code, problem)
		return
	}
	to := req.To()
	aor := to.Address.User
	user, authed := r.digest(req, tx, log, false, srcIP, "aor", aor)
	if !authed {
		return
	}
	if user != aor {
		log.Warn("sip: REGISTER for another user's address", "user", user, "aor", aor)
		respond(403, "Forbidden (credentials do not match To)")
		return
	}
	r.Limiter.Succeed(srcIP, user)

	defExpires := time.Hour
	if e := req.GetHeader("Expires"); e != nil {
		n, err := strconv.Atoi(strings.TrimSpace(e.Value()))
		if err != nil || n < 0 {
			respond(400, "Bad Request (Expires)")
			return
		}
		defExpires = time.Duration(n) * time.Second
	}
	path, err := pathOf(req)
	if err != nil {
		log.Warn("sip: bad REGISTER", "problem", err.Error())
		respond(400, "Bad Request ("+err.Error()+")")
		return
	}
	if len(path) == 0 {
		// With a Path the proxy that added it reaches the phone (its
		// received address, behind NAT); the Contact stays as sent.
		fixContact(req)
	}
	contacts := req.GetHeaders("Contact")
	r.mu.Lock()
	current := r.liveLocked(user)
	r.mu.Unlock()
	for _, h := range contacts {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			continue
		}
		if c.Address.Wildcard {
			if defExpires != 0 || len(contacts) != 1 {
				respond(400, "Bad Request (wildcard Contact needs Expires: 0)")
				return
			}
			current = nil
			break
		}
		exp := defExpires
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				respond(400, "Bad Request (contact expires)")
				return
			}
			exp = time.Duration(n) * time.Second
		}
		if exp != 0 && exp < r.MinExpires {
			respond(423, "Interval Too Brief", sip.NewHeader("Min-Expires", strconv.Itoa(int(r.MinExpires.Seconds()))))
			return
		}
		exp = min(exp, r.MaxExpires)
		uri := c.Address.String()
		kept := current[:0]
		for _, b := range current {
			if b.Contact != uri {
				kept = append(kept, b)
			}
		}
		current = kept
		if exp > 0 {
			current = append(current, Binding{User: user, Contact: uri, Source: src, Transport: req.Transport(),
				Expires: r.now().Add(exp), CallID: callIDOf(req), CSeq: req.CSeq().SeqNo, Path: path})
		}
	}
	if len(current) > r.MaxContacts {
		sort.Slice(current, func(i, j int) bool { return current[i].Expires.After(current[j].Expires) })
		current = current[:r.MaxContacts]
	}
	r.mu.Lock()
	if len(current) == 0 {
		delete(r.bindings, user)
	} else {
		r.bindings[user] = current
	}
	r.mu.Unlock()
	ok := sip.NewResponseFromRequest(req, 200, "OK", nil)
	now := r.now()
	for _, b := range current {
		ok.AppendHeader(sip.NewHeader("Contact", fmt.Sprintf("<%s>;expires=%d", b.Contact, int(b.Expires.Sub(now).Seconds()+0.5))))
	}
	if len(path) > 0 && hasOptionTag(req, "Supported", "path") {
		// RFC 3327 5.3: the stored Path goes back to a UA that supports it.
		for _, p := range path {
			ok.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	ok.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	if err := tx.Respond(ok); err != nil {
		log.Debug("sip: REGISTER response failed", "error", err)
	}
	if len(current) == 0 {
		log.Info("sip: unregistered", "user", user, "transport", req.Transport())
	} else {
		log.Info("sip: registered", "user", user, "contacts", len(current), "transport", req.Transport())
	}
	r.syncPresence()
}

// syncPresence tells Presence every user whose number of live contacts
// changed since it last heard (registrations, unregistrations, expiries).
// The agent calls it once a second; serveRegister after each REGISTER.
func (r *Registrar) syncPresence() {
	if r.Presence == nil {
		return
	}
	type update struct {
		user string
		n    int
	}
	var ups []update
	r.mu.Lock()
	if r.reported == nil {
		r.reported = map[string]int{}
	}
	now := r.now()
	for user, bs := range r.bindings {
		n := 0
		for _, b := range bs {
			if now.Before(b.Expires) {
				n++
			}
		}
		if r.reported[user] != n {
			ups = append(ups, update{user, n})
		}
	}
	for user := range r.reported {
		if _, ok := r.bindings[user]; !ok {
			ups = append(ups, update{user, 0})
		}
	}
	for _, u := range ups {
		if u.n == 0 {
			delete(r.reported, u.user)
		} else {
			r.reported[u.user] = u.n
		}
	}
	r.mu.Unlock()
	// Outside r.mu: the store's hook may run application code.
	for _, u := range ups {
		r.Presence.SetOnline(u.user, "sip", u.n)
	}
}

// digest runs one step of the digest exchange (RFC 3261 22) for req:
// REGISTER carries Authorization and is challenged with 401 and
// WWW-Authenticate, requests to a proxy-like role (INVITE, MESSAGE) carry
// Proxy-Authorization and get 407 and Proxy-Authenticate. Missing or
// stale credentials are challenged, wrong ones answered 403 and counted
// against src; either way ok is false and the request has been answered.
// args are added to the failure's log line.
func (r *Registrar) digest(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger, proxy bool, src netip.Addr, args ...any) (user string, ok bool) {
	authz, code, reason, challenge := "Authorization", 401, "Unauthorized", "WWW-Authenticate"
	if proxy {
		authz, code, reason, challenge = "Proxy-Authorization", 407, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	header := ""
	if h := req.GetHeader(authz); h != nil {
		header = h.Value()
	}
	user, res, why := r.Auth.Verify(header, req.Method.String(), r.Directory.Password)
	lockedOut := false
	if user != "" && res == AuthOK && r.Limiter.AccountLocked(user, src) {
		// Guessed at from many addresses: only sources that have logged
		// in as this account before may use it now, even with the right
		// password (which is not counted as a failure).
		log.Info("sip: account locked after repeated failures; refused a new source", "user", user)
		res, lockedOut = AuthFailed, true
	}
	var out *sip.Response
	switch {
	case res == AuthOK:
		return user, true
	case res == AuthMissing || res == AuthStale:
		out = sip.NewResponseFromRequest(req, code, reason, nil)
		for _, c := range r.Auth.Challenges(res == AuthStale) {
			out.AppendHeader(sip.NewHeader(challenge, c))
		}
	case lockedOut:
		out = sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	default:
		r.fail(src, user, log, "sip: authentication failed", append([]any{"method", req.Method.String(), "user", user, "reason", why}, args...)...)
		out = sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	if err := tx.Respond(out); err != nil {
		log.Debug("sip: response to unauthenticated request failed", "status", out.StatusCode, "error", err)
	}
	return "", false
}

// fail logs a failed authentication or a scanner-like request and counts
// it against src and user (see FailureLimiter); a block is logged once.
// Failures of a source that is already blocked are not logged.
func (r *Registrar) fail(src netip.Addr, user string, log *slog.Logger, msg string, args ...any) {
	if !r.Limiter.Blocked(src) {
		log.Warn(msg, args...)
	}
	if r.Limiter.Fail(src, user) {
		log.Warn("sip: source blocked after repeated failures", "ip", src.String(), "for", r.Limiter.BlockedFor(src))
	}
}

// maxPath bounds the Path entries and bytes a REGISTER may carry.
const (
	maxPathEntries = 8
	maxPathBytes   = 2048
)

// pathOf returns a REGISTER's Path header values in order (a header
// holding several comma-separated entries gives each), each a
// "<sip:...;lr>" name-addr; an error for a malformed or oversized Path.
func pathOf(req *sip.Request) ([]string, error) {
	var out []string
	size := 0
	for _, h := range req.GetHeaders("Path") {
		for rest, more := h.Value(), true; more; {
			var v string
			v, rest, more = nextListItem(rest)
			v = strings.TrimSpace(v)
			if !strings.HasPrefix(v, "<") || !strings.Contains(v, ">") {
				return nil, fmt.Errorf("path %q is no <URI>", printable([]byte(v), 60))
			}
			var u sip.Uri
			if err := sip.ParseUri(v[1:strings.IndexByte(v, '>')], &u); err != nil || u.Host == "" {
				return nil, fmt.Errorf("path %q is no SIP URI", printable([]byte(v), 60))
			}
			size += len(v)
			out = append(out, v)
			if len(out) > maxPathEntries || size > maxPathBytes {
				return nil, errors.New("path too long")
			}
		}
	}
	return out, nil
}
