package sip

import (
	"log/slog"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// InviteAuth says which inbound INVITEs (and pager MESSAGEs) must carry
// digest credentials. It
// applies only when the agent has a Registrar (whose Directory holds the
// passwords); calls from a trunk's address are never challenged.
type InviteAuth int

const (
	// InviteAuthKnownUsers challenges an INVITE whose From claims a local
	// account — its host names this server (its IP addresses, the realm,
	// "localhost" or Registrar.Domains) — whether or not the user exists:
	// nobody can place calls as extension 1000 without 1000's password,
	// and a scanner gets the same 407 for every name, so it cannot tell
	// directory users from the rest (a wrong answer counts as a failure).
	// Callers from other domains are guests (Call.AuthUser is ""), as in
	// Kamailio's "from_uri==myself" rule.
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
	fromUser, fromHost := "", ""
	if f := req.From(); f != nil {
		fromUser, fromHost = f.Address.User, f.Address.Host
	}
	// Whether to challenge never depends on the directory (no user
	// enumeration): only on what the From claims.
	local := a.fromUs(fromHost)
	header := ""
	if h := req.GetHeader("Proxy-Authorization"); h != nil {
		header = h.Value()
	}
	need := a.cfg.InviteAuth == InviteAuthAll || local
	if !need && header == "" {
		return "", true
	}
	user, ok := r.digest(req, tx, log, true, src, "from", fromUser)
	if !ok {
		return "", false
	}
	if local && user != fromUser {
		a.authFailed(src, user, log, "sip: credentials do not match From", "method", req.Method.String(), "user", user, "from", fromUser)
		a.respond(req, tx, 403, "Forbidden (credentials do not match From)")
		return "", false
	}
	r.Limiter.Succeed(src, user)
	return user, true
}

// fromUs reports whether a From host names this server: one of this
// host's addresses or PublicIP, "localhost", the registrar's realm or one
// of its Domains.
func (a *Agent) fromUs(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap()
		return ip == a.cfg.PublicIP || a.localIPs[ip] || ip.IsLoopback() || ip == a.udpAddr.Addr()
	}
	if h == "localhost" {
		return true
	}
	if r := a.cfg.Registrar; r != nil {
		if strings.EqualFold(h, r.Auth.Realm) {
			return true
		}
		for _, d := range r.Domains {
			if strings.EqualFold(h, d) {
				return true
			}
		}
	}
	return false
}

// authFailed logs a failed authentication or scanner-like request and
// counts it against the source (see Registrar.fail).
func (a *Agent) authFailed(src netip.Addr, user string, log *slog.Logger, msg string, args ...any) {
	if r := a.cfg.Registrar; r != nil {
		r.fail(src, user, log, msg, args...)
		return
	}
	log.Warn(msg, args...)
}
