package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Session timers (RFC 4028): a call whose far end died without a BYE
// (a crashed phone, a NAT binding gone) would otherwise live forever when
// no RTP flows — on hold, say. One side, the refresher, re-INVITEs or
// UPDATEs every half interval; when refreshes stop, the other side sends
// BYE shortly before the interval runs out.

// ErrSessionExpired ends a leg whose session was not refreshed in time
// (or whose refresh we sent failed).
var ErrSessionExpired = errors.New("sip: session expired")

// headerMsg is what requests and responses share that we need here.
type headerMsg interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
	AppendHeader(h sip.Header)
}

// sessionExpires is a parsed Session-Expires header.
type sessionExpires struct {
	interval  time.Duration
	refresher string // "uac", "uas" or "" (not chosen)
}

// parseSessionExpires reads "1800;refresher=uac" (or the compact "x").
func parseSessionExpires(req headerMsg) (sessionExpires, bool, error) {
	h := req.GetHeader("Session-Expires")
	if h == nil {
		h = req.GetHeader("x")
	}
	if h == nil {
		return sessionExpires{}, false, nil
	}
	parts := strings.Split(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(parts[0]))
	if err != nil || n <= 0 || n > 86400 {
		return sessionExpires{}, true, fmt.Errorf("bad Session-Expires %q", h.Value())
	}
	se := sessionExpires{interval: time.Duration(n) * time.Second}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			v = strings.ToLower(strings.TrimSpace(v))
			if v != "uac" && v != "uas" {
				return sessionExpires{}, true, fmt.Errorf("bad refresher %q", v)
			}
			se.refresher = v
		}
	}
	return se, true, nil
}

// hasOptionTag reports whether a Supported/Require-style header lists tag.
func hasOptionTag(m headerMsg, header, tag string) bool {
	for _, h := range m.GetHeaders(header) {
		for _, t := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(t), tag) {
				return true
			}
		}
	}
	return false
}

// sessionTimer is a leg's session-timer state, guarded by Leg.mu.
type sessionTimer struct {
	interval     time.Duration
	weRefresh    bool
	peerSupports bool // the far end knows "timer": we may Require it
	timer        *time.Timer
	gen          int
}

// negotiateInbound decides the session timer of an incoming INVITE. It
// returns a status (422) to reject with, or 0.
func (a *Agent) negotiateInbound(req *sip.Request) (st sessionTimer, code int, minSE time.Duration) {
	minSE = a.cfg.MinSessionExpires
	if a.cfg.SessionExpires < 0 {
		return sessionTimer{}, 0, minSE
	}
	se, present, err := parseSessionExpires(req)
	if err != nil {
		return sessionTimer{}, 400, minSE
	}
	st.peerSupports = hasOptionTag(req, "Supported", "timer") || hasOptionTag(req, "Require", "timer")
	switch {
	case present && se.interval < minSE:
		return sessionTimer{}, 422, minSE
	case present:
		st.interval = se.interval
	default:
		st.interval = a.cfg.SessionExpires
	}
	switch {
	case se.refresher != "":
		st.weRefresh = se.refresher == "uas"
	case st.peerSupports:
		st.weRefresh = false // the caller refreshes (RFC 4028 9: UAS chooses)
	default:
		st.weRefresh = true // a caller without timer support cannot
	}
	return st, 0, minSE
}

// sessionHeaders adds Session-Expires (and Require: timer when the peer
// supports it) to a 2xx we send or a refresh request; uacIsUs says whether
// we are the UAC of that transaction.
func (st *sessionTimer) headers(m headerMsg, uacIsUs bool) {
	if st.interval <= 0 {
		return
	}
	refresher := "uas"
	if st.weRefresh == uacIsUs {
		refresher = "uac"
	}
	m.AppendHeader(sip.NewHeader("Session-Expires", fmt.Sprintf("%d;refresher=%s", int(st.interval.Seconds()), refresher)))
	if st.peerSupports {
		if _, isRes := m.(*sip.Response); isRes {
			m.AppendHeader(sip.NewHeader("Require", "timer"))
		}
	}
}

// armSessionTimer (re)starts the leg's session timer: our refresh at half
// the interval, or the expiry check shortly before the interval ends.
func (l *Leg) armSessionTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &l.session
	if st.interval <= 0 || l.state == LegEnded {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	st.gen++
	gen := st.gen
	if st.weRefresh {
		st.timer = time.AfterFunc(st.interval/2, func() { l.refreshSession(gen) })
		return
	}
	wait := st.interval - min(32*time.Second, st.interval/3)
	st.timer = time.AfterFunc(wait, func() { l.sessionExpired(gen) })
}

func (l *Leg) stopSessionTimer() {
	l.mu.Lock()
	if l.session.timer != nil {
		l.session.timer.Stop()
	}
	l.session.gen++
	l.mu.Unlock()
}

func (l *Leg) sessionExpired(gen int) {
	l.mu.Lock()
	stale := gen != l.session.gen || l.state != LegAnswered
	l.mu.Unlock()
	if stale {
		return
	}
	l.log.Warn("sip: session not refreshed in time, hanging up", "interval", l.session.interval)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.hangup(ctx, ErrSessionExpired)
}

// refreshSession sends our refresh: UPDATE without SDP when the peer
// allows it (no media renegotiation), a re-INVITE with the current SDP
// otherwise. A 408 or 481 (or no answer) means the session is gone.
func (l *Leg) refreshSession(gen int) {
	l.mu.Lock()
	stale := gen != l.session.gen || l.state != LegAnswered
	l.mu.Unlock()
	if stale {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	defer cancel()
	var err error
	if l.peerAllows("UPDATE") {
		req := sip.NewRequest(sip.UPDATE, l.remoteTarget())
		req.AppendHeader(l.agent.contactFor(l.ip, l.transport()))
		l.mu.Lock()
		l.session.headers(req, true)
		l.mu.Unlock()
		_, err = l.inDialog(ctx, req)
	} else {
		err = l.Reinvite(ctx, l.ep.Config().Direction)
	}
	var se *StatusError
	if err != nil && (!errors.As(err, &se) || se.Code == 408 || se.Code == 481) {
		l.log.Warn("sip: session refresh failed, hanging up", "error", err)
		_ = l.hangup(ctx, ErrSessionExpired)
		return
	}
	if err != nil {
		l.log.Info("sip: session refresh refused; the session goes on", "error", err)
	}
	l.armSessionTimer()
}

// peerAllows reports whether the far end listed method in its Allow header
// (of its INVITE, or of its 2xx for legs we dialled).
func (l *Leg) peerAllows(method string) bool {
	switch {
	case l.uas != nil:
		return hasOptionTag(l.uas.InviteRequest, "Allow", method)
	case l.uac != nil && l.uac.InviteResponse != nil:
		return hasOptionTag(l.uac.InviteResponse, "Allow", method)
	}
	return false
}

// sessionRefreshed applies a refresh the peer sent (re-INVITE or UPDATE)
// and adds our Session-Expires to the 2xx answering it.
func (l *Leg) sessionRefreshed(req *sip.Request, res *sip.Response) {
	se, present, err := parseSessionExpires(req)
	l.mu.Lock()
	st := &l.session
	if present && err == nil && se.interval >= l.agent.cfg.MinSessionExpires {
		st.interval = se.interval
		if se.refresher != "" {
			st.weRefresh = se.refresher == "uas"
		}
	}
	if st.interval > 0 {
		st.headers(res, false)
	}
	l.mu.Unlock()
	l.armSessionTimer()
}

// negotiateOutbound reads the session timer from the 2xx to an INVITE we
// sent. Without Session-Expires in it the far end does not do timers; we
// refresh ourselves (RFC 4028 7.4 lets the UAC do so).
func (a *Agent) negotiateOutbound(res *sip.Response) sessionTimer {
	if a.cfg.SessionExpires < 0 {
		return sessionTimer{}
	}
	st := sessionTimer{peerSupports: hasOptionTag(res, "Require", "timer") || hasOptionTag(res, "Supported", "timer")}
	se, present, err := parseSessionExpires(res)
	if !present || err != nil {
		st.interval, st.weRefresh = a.cfg.SessionExpires, true
		return st
	}
	st.interval = se.interval
	st.weRefresh = se.refresher != "uas" // refresher=uac (or unset): us
	return st
}

// onUpdate handles UPDATE (RFC 3311) in a confirmed dialog: a session
// refresh without SDP, or a new offer (hold, address change) answered in
// the 200 like a re-INVITE's.
func (a *Agent) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if l.State() != LegAnswered {
		// An UPDATE in an early dialog would race our 200's SDP.
		a.respond(req, tx, 491, "Request Pending")
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if len(req.Body()) > 0 {
		body, code := l.applyRemoteOffer(req.Body())
		if code != 0 {
			a.respond(req, tx, code, "Not Acceptable Here")
			return
		}
		res = sip.NewSDPResponseFromRequest(req, body)
	}
	res.AppendHeader(a.contactFor(l.ip, req.Transport()))
	l.sessionRefreshed(req, res)
	if err := tx.Respond(res); err != nil {
		l.log.Debug("sip: UPDATE response failed", "error", err)
	}
}
