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
	user, res, why := r.Auth.Verify(header, req.Method.String(), r.Directory.Password)
	switch res {
	case AuthMissing, AuthStale:
		out := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		for _, c := range r.Auth.Challenges(res == AuthStale) {
			out.AppendHeader(sip.NewHeader("Proxy-Authenticate", c))
		}
		if err := tx.Respond(out); err != nil {
			log.Debug("sip: respond 407 failed", "error", err)
		}
		return "", false
	case AuthFailed:
		a.authFailed(src, log, "sip: authentication failed", "method", req.Method.String(), "user", user, "from", fromUser, "reason", why)
		a.respond(req, tx, 403, "Forbidden")
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
// counts it against the source; the source is blocked after
// Limiter.Max failures in a window, and that is logged once.
func (a *Agent) authFailed(src netip.Addr, log *slog.Logger, msg string, args ...any) {
	log.Warn(msg, args...)
	r := a.cfg.Registrar
	if r == nil {
		return
	}
	if r.Limiter.Fail(src) {
		log.Warn("sip: source blocked after repeated failures", "ip", src.String(), "for", r.Limiter.Block)
	}
}
