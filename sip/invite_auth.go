package sip

import (
	"log/slog"
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// InviteAuth says which inbound INVITEs (and pager MESSAGEs) must carry
// digest credentials. It
// applies only when the agent has a Registrar (whose Directory holds the
// passwords); calls from a trunk's address are never challenged.
type InviteAuth int

const (
	// InviteAuthKnownUsers challenges an INVITE whose From names a user of
	// the directory: nobody can place calls as extension 1000 without
	// 1000's password. Other callers are guests (Call.AuthUser is "").
	InviteAuthKnownUsers InviteAuth = iota
	// InviteAuthAll challenges every INVITE not from a trunk.
	InviteAuthAll
	// InviteAuthNone never challenges.
	InviteAuthNone
)

// authorize runs the digest exchange for an INVITE or MESSAGE (RFC 3261
// 22.3: 407 with Proxy-Authenticate, credentials in Proxy-Authorization).
// It returns the authenticated user ("" for a guest) and false when it has
// answered the request itself (407 or 403).
func (a *Agent) authorize(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger) (string, bool) {
	r := a.cfg.Registrar
	if r == nil || a.cfg.InviteAuth == InviteAuthNone {
		return "", true
	}
	src := sourceIP(req)
	if _, ok := a.trunkFor(src); ok {
		return "", true
	}
	if r.Limiter.Blocked(src) {
		a.respond(req, tx, 403, "Forbidden")
		return "", false
	}
	fromUser := ""
	if f := req.From(); f != nil {
		fromUser = f.Address.User
	}
	_, known := r.Directory.Lookup(fromUser)
	header := ""
	if h := req.GetHeader("Proxy-Authorization"); h != nil {
		header = h.Value()
	}
	need := a.cfg.InviteAuth == InviteAuthAll || known
	if !need && header == "" {
		return "", true
	}
	user, ok := r.digest(req, tx, log, true, src, "from", fromUser)
	if !ok {
		return "", false
	}
	if known && user != fromUser {
		a.authFailed(src, log, "sip: credentials do not match From", "method", req.Method.String(), "user", user, "from", fromUser)
		a.respond(req, tx, 403, "Forbidden (credentials do not match From)")
		return "", false
	}
	r.Limiter.Succeed(src)
	return user, true
}

// authFailed logs a failed authentication or scanner-like request and
// counts it against the source (see Registrar.fail).
func (a *Agent) authFailed(src netip.Addr, log *slog.Logger, msg string, args ...any) {
	if r := a.cfg.Registrar; r != nil {
		r.fail(src, log, msg, args...)
		return
	}
	log.Warn(msg, args...)
}
