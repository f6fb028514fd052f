package sip

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// CallLimits bound the inbound calls one source IP address may hold and
// start, so that one host cannot take every RTP port of the pool (each
// call holds a port pair from INVITE to hang-up). Calls from a trunk's
// address are never limited. An INVITE over a limit is answered 503
// Service Unavailable with Retry-After, before any port is allocated.
// The zero value gives the defaults below.
type CallLimits struct {
	// GuestCalls is how many unauthenticated (guest) calls one source
	// may have at once; 0 means 10, negative means no limit.
	GuestCalls int
	// UserCalls is how many calls authenticated as a directory user one
	// source may have at once; 0 means 100, negative means no limit.
	UserCalls int
	// GuestRate is how many new guest calls per second one source may
	// start, on average (a token bucket of GuestBurst); 0 means 5,
	// negative means no limit. Authenticated calls are not rate-limited.
	GuestRate float64
	// GuestBurst is the token bucket's size: how many guest calls a
	// source may start at once; 0 means 10.
	GuestBurst int
	// RetryAfter is the Retry-After of the 503; 0 means 5 s.
	RetryAfter time.Duration
	// GuestShare is the fraction of the RTP port pool that guest calls
	// from all sources together may hold, so that a flood from many
	// addresses still leaves ports for directory users and trunks; 0
	// means 0.8, negative (or 1 and above) means no such limit.
	GuestShare float64
}

func (c CallLimits) withDefaults() CallLimits {
	if c.GuestCalls == 0 {
		c.GuestCalls = 10
	}
	if c.UserCalls == 0 {
		c.UserCalls = 100
	}
	if c.GuestRate == 0 {
		c.GuestRate = 5
	}
	if c.GuestBurst <= 0 {
		c.GuestBurst = 10
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5 * time.Second
	}
	if c.GuestShare == 0 {
		c.GuestShare = 0.8
	}
	return c
}

// Refusal says why admission refused a call.
type Refusal uint8

// Reasons a call is refused by CallLimits.
const (
	Admitted        Refusal = iota
	TooManyCalls            // the source holds its limit of concurrent calls
	CallRateTooHigh         // the source starts guest calls faster than GuestRate
	TooManyGuests           // guests from all sources hold GuestShare of the ports
)

// String names the refusal for logs.
func (r Refusal) String() string {
	switch r {
	case Admitted:
		return "admitted"
	case TooManyCalls:
		return "too many calls from source"
	case CallRateTooHigh:
		return "call rate from source too high"
	case TooManyGuests:
		return "guest share of the RTP ports in use"
	}
	return "unknown"
}

// admission keeps the per-source counts of CallLimits.
type admission struct {
	lim      CallLimits
	now      func() time.Time
	guestCap int // guest calls allowed from all sources; 0: no cap

	mu     sync.Mutex
	src    map[netip.Addr]*sourceCalls
	guests int
}

type sourceCalls struct {
	guests, users int
	tokens        float64
	last          time.Time
}

// newAdmission applies lim to a pool of ports port pairs.
func newAdmission(lim CallLimits, ports int) *admission {
	ad := &admission{lim: lim.withDefaults(), now: time.Now, src: map[netip.Addr]*sourceCalls{}}
	if s := ad.lim.GuestShare; s > 0 && s < 1 {
		ad.guestCap = max(int(s*float64(ports)), 1)
	}
	return ad
}

// admit counts a new call from src (authenticated or guest). When it is
// admitted, release must be called once when the call ends.
func (ad *admission) admit(src netip.Addr, authenticated bool) (release func(), why Refusal) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	now := ad.now()
	if len(ad.src) > 65536 {
		ad.pruneLocked(now)
	}
	s := ad.src[src]
	if s == nil {
		s = &sourceCalls{tokens: float64(ad.lim.GuestBurst), last: now}
		ad.src[src] = s
	}
	if authenticated {
		if ad.lim.UserCalls > 0 && s.users >= ad.lim.UserCalls {
			return nil, TooManyCalls
		}
		s.users++
	} else {
		if ad.lim.GuestCalls > 0 && s.guests >= ad.lim.GuestCalls {
			return nil, TooManyCalls
		}
		if ad.guestCap > 0 && ad.guests >= ad.guestCap {
			return nil, TooManyGuests
		}
		if ad.lim.GuestRate > 0 {
			s.tokens = min(float64(ad.lim.GuestBurst), s.tokens+now.Sub(s.last).Seconds()*ad.lim.GuestRate)
			s.last = now
			if s.tokens < 1 {
				return nil, CallRateTooHigh
			}
			s.tokens--
		}
		s.guests++
		ad.guests++
	}
	var once sync.Once
	return func() { once.Do(func() { ad.release(src, authenticated) }) }, Admitted
}

func (ad *admission) release(src netip.Addr, authenticated bool) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	s := ad.src[src]
	if s == nil {
		return
	}
	if authenticated {
		s.users--
	} else {
		s.guests--
		ad.guests--
	}
}

// pruneLocked forgets sources with no calls whose bucket has refilled.
func (ad *admission) pruneLocked(now time.Time) {
	full := float64(ad.lim.GuestBurst)
	for k, s := range ad.src {
		if s.guests == 0 && s.users == 0 && (ad.lim.GuestRate <= 0 || s.tokens+now.Sub(s.last).Seconds()*ad.lim.GuestRate >= full) {
			delete(ad.src, k)
		}
	}
}

// admit applies CallLimits to a new inbound call that is not from a
// trunk. It answers 503 with Retry-After and returns false when the
// source is over a limit (logged at a bounded rate).
func (a *Agent) admit(req *sip.Request, tx sip.ServerTransaction, l *Leg, log *slog.Logger) bool {
	release, why := a.admission.admit(sourceIP(req), l.authUser != "")
	if why == Admitted {
		l.release = release
		return true
	}
	a.observer().InviteRejected(why.rejectReason())
	if ok, suppressed := a.admitLog.allow(time.Now()); ok {
		log.Warn("sip: call refused by per-source limits", "reason", why.String(), "auth_user", l.authUser, "suppressed", suppressed)
	}
	res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(int(a.admission.lim.RetryAfter.Seconds()))))
	if err := tx.Respond(res); err != nil {
		log.Debug("sip: respond 503 failed", "error", err)
	}
	return false
}
