package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// PagerMessage is a MESSAGE received outside any call (RFC 3428 pager
// mode): a chat line from a phone to a user or to the application.
type PagerMessage struct {
	From        string // the sender's From header value
	FromUser    string // its user part
	AuthUser    string // the directory user the request authenticated as, or ""
	User        string // the request-URI user: who it is for
	ContentType string
	Text        string
	Source      netip.AddrPort
}

// maxMessageBody bounds MESSAGE bodies (RFC 3428 suggests staying under
// 1300 bytes for UDP; larger ones belong in a session).
const maxMessageBody = 64 * 1024

// onPagerMessage handles a MESSAGE outside a dialog: a message for a
// registered user is relayed to their phones; anything else goes to
// Config.OnMessage, whose status is the answer (404 without one).
func (a *Agent) onPagerMessage(req *sip.Request, tx sip.ServerTransaction) {
	log := a.log.With("call_id", callIDOf(req), "source", req.Source())
	if code, problem := validateRequest(req); code != 0 {
		log.Warn("sip: bad MESSAGE", "problem", problem)
		a.respond(req, tx, code, problem)
		return
	}
	ct := "text/plain"
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/") {
		a.respond(req, tx, 415, "Unsupported Media Type")
		return
	}
	if len(req.Body()) > maxMessageBody {
		a.respond(req, tx, 413, "Request Entity Too Large")
		return
	}
	authUser, ok := a.authorize(req, tx, log)
	if !ok {
		return
	}
	src, _ := netip.ParseAddrPort(req.Source())
	m := PagerMessage{From: headerValue(req.From()), FromUser: req.From().Address.User, AuthUser: authUser,
		User: requestUser(req), ContentType: ct, Text: string(req.Body()), Source: src}
	if r := a.cfg.Registrar; r != nil && len(r.Lookup(m.User)) > 0 {
		// Relay to the user's phones; answer as soon as one takes it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := a.SendMessage(ctx, m.User, m.FromUser, ct, m.Text)
		var se *StatusError
		switch {
		case err == nil:
			a.respond(req, tx, 200, "OK")
		case errors.As(err, &se):
			a.respond(req, tx, se.Code, se.Reason)
		default:
			log.Info("sip: MESSAGE relay failed", "user", m.User, "error", err)
			a.respond(req, tx, 480, "Temporarily Unavailable")
		}
		return
	}
	if a.cfg.OnMessage == nil {
		a.respond(req, tx, 404, "Not Found")
		return
	}
	code := a.callOnMessage(m, log)
	if code < 200 || code > 699 {
		code = 500
	}
	reason := "OK"
	if code >= 300 {
		reason = defaultReason(code)
	}
	a.respond(req, tx, code, reason)
}

// callOnMessage runs the application's OnMessage; a panic in it is
// recovered (one log line with the stack) and answered 500.
func (a *Agent) callOnMessage(m PagerMessage, log *slog.Logger) (code int) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("sip: Config.OnMessage panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			code = 500
		}
	}()
	return a.cfg.OnMessage(m)
}

// SendMessage sends a pager-mode MESSAGE. target is a registered user's
// name (every phone of theirs gets it; nil once one accepts) or a SIP URI;
// fromUser is the sender shown.
func (a *Agent) SendMessage(ctx context.Context, target, fromUser, contentType, text string) error {
	if contentType == "" {
		contentType = "text/plain;charset=UTF-8"
	}
	if fromUser == "" {
		fromUser = "switchboard"
	}
	if strings.ContainsAny(target, "@:") {
		return a.sendMessageTo(ctx, target, "", "", fromUser, contentType, text)
	}
	if a.cfg.Registrar == nil {
		return fmt.Errorf("sip: message to %q: %w", target, ErrNotRegistered)
	}
	bindings := a.cfg.Registrar.Lookup(target)
	if len(bindings) == 0 {
		return fmt.Errorf("sip: message to %q: %w", target, ErrNotRegistered)
	}
	var errs []error
	for _, b := range bindings {
		dest, transport := a.routeTo(b)
		err := a.sendMessageTo(ctx, b.Contact, dest, transport, fromUser, contentType, text)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Agent) sendMessageTo(ctx context.Context, target, destination, transport, fromUser, contentType, text string) error {
	uri, err := parseTarget(target)
	if err != nil {
		return fmt.Errorf("sip: message to %q: %w", target, err)
	}
	remote := netip.Addr{}
	if ip, err := netip.ParseAddr(uri.Host); err == nil {
		remote = ip
	}
	ip := a.advertiseIP(remote)
	req := sip.NewRequest(sip.MESSAGE, uri)
	if transport != "" {
		req.SetTransport(transport)
	}
	if destination != "" {
		req.SetDestination(destination)
	}
	req.AppendHeader(newFrom("", sip.Uri{Scheme: "sip", User: fromUser, Host: ip.String()}))
	req.AppendHeader(&sip.ToHeader{Address: uri, Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	req.SetBody([]byte(text))
	res, err := a.clientFor(req.Transport()).Do(ctx, req)
	if err != nil {
		return fmt.Errorf("sip: message to %s: %w", target, err)
	}
	if !res.IsSuccess() {
		return fmt.Errorf("sip: message to %s: %w", target, statusError(res.StatusCode, res.Reason))
	}
	return nil
}
