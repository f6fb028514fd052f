package sip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Binding is one registered contact of a user.
type Binding struct {
	User    string
	Contact string         // the Contact URI as registered
	Source  netip.AddrPort // where the REGISTER came from: where requests go (NAT)
	// Transport the phone registered over ("UDP", "TCP").
	Transport string
	Expires   time.Time
	CallID    string
	CSeq      uint32
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

	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	bindings map[string][]Binding
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
	r.Limiter.Succeed(srcIP)

	defExpires := time.Hour
	if e := req.GetHeader("Expires"); e != nil {
		n, err := strconv.Atoi(strings.TrimSpace(e.Value()))
		if err != nil || n < 0 {
			respond(400, "Bad Request (Expires)")
			return
		}
		defExpires = time.Duration(n) * time.Second
	}
	fixContact(req)
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
				Expires: r.now().Add(exp), CallID: callIDOf(req), CSeq: req.CSeq().SeqNo})
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
	ok.AppendHeader(sip.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	if err := tx.Respond(ok); err != nil {
		log.Debug("sip: REGISTER response failed", "error", err)
	}
	if len(current) == 0 {
		log.Info("sip: unregistered", "user", user, "transport", req.Transport())
	} else {
		log.Info("sip: registered", "user", user, "contacts", len(current), "transport", req.Transport())
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
	var out *sip.Response
	switch res {
	case AuthOK:
		return user, true
	case AuthMissing, AuthStale:
		out = sip.NewResponseFromRequest(req, code, reason, nil)
		for _, c := range r.Auth.Challenges(res == AuthStale) {
			out.AppendHeader(sip.NewHeader(challenge, c))
		}
	default:
		r.fail(src, log, "sip: authentication failed", append([]any{"method", req.Method.String(), "user", user, "reason", why}, args...)...)
		out = sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	if err := tx.Respond(out); err != nil {
		log.Debug("sip: response to unauthenticated request failed", "status", out.StatusCode, "error", err)
	}
	return "", false
}

// fail logs a failed authentication or a scanner-like request and counts
// it against src; the source is blocked after Limiter.Max failures in a
// window, which is logged once.
func (r *Registrar) fail(src netip.Addr, log *slog.Logger, msg string, args ...any) {
	log.Warn(msg, args...)
	if r.Limiter.Fail(src) {
		log.Warn("sip: source blocked after repeated failures", "ip", src.String(), "for", r.Limiter.Block)
	}
}
