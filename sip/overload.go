package sip

import (
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media"
)

// OverloadOptions is the agent's admission control for new calls: above
// these limits an initial INVITE is answered 503 Service Unavailable with
// Retry-After before anything is allocated for it (no dialog, no RTP
// port, no actor), so calls already up keep their CPU and clean audio. A
// retransmission of a refused INVITE is answered from its transaction
// (the same 503) without reaching us again.
type OverloadOptions struct {
	// MaxPendingInvites bounds the inbound INVITE transactions in
	// progress: received and not yet finished (final response sent and,
	// for a 2xx, ACKed). It is the measured signal of setup work queueing
	// up — under overload the flows answer late and it grows. Calls still
	// ringing (e.g. a flow dialling someone) count. Zero means
	// DefaultMaxPendingInvites; negative disables the limit.
	MaxPendingInvites int
	// MaxCalls bounds the inbound calls (legs) up or being set up; zero
	// means no limit other than the RTP port pool.
	MaxCalls int
	// RetryAfter is the Retry-After of the 503s; zero means
	// DefaultRetryAfter. Whole seconds.
	RetryAfter time.Duration
	// PacerOverrunHold, when positive, refuses new calls for this long
	// after the media pacer last took longer than its 20 ms tick (see
	// media.Pacer.Overruns): the media plane is saturated and one more
	// call would make every call's audio late. Off by default, because a
	// single late tick (a GC pause, a noisy neighbour) then refuses calls
	// for the whole hold; 2–5 s suits a dedicated machine.
	PacerOverrunHold time.Duration
}

// DefaultMaxPendingInvites is OverloadOptions.MaxPendingInvites when unset.
const DefaultMaxPendingInvites = 200

// DefaultRetryAfter is OverloadOptions.RetryAfter when unset.
const DefaultRetryAfter = 5 * time.Second

// PendingInvites returns how many inbound INVITE transactions are in
// progress (see OverloadOptions.MaxPendingInvites).
func (a *Agent) PendingInvites() int { return int(a.pendingInvites.Load()) }

// InboundCalls returns how many inbound legs are up or being set up.
func (a *Agent) InboundCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.uas)
}

// admitInvite counts a new INVITE transaction as pending and decides
// whether it may proceed. When it may, the caller must call the returned
// release once the transaction is over; when it may not, the 503 has been
// sent.
func (a *Agent) admitInvite(req *sip.Request, tx sip.ServerTransaction) (release func(), ok bool) {
	o := a.cfg.Overload
	limit := int64(o.MaxPendingInvites)
	if limit == 0 {
		limit = DefaultMaxPendingInvites
	}
	reason, reject := RejectReason(0), false
	switch {
	case a.draining.Load():
		reason, reject = RejectShuttingDown, true
	case !a.takePending(limit):
		reason, reject = RejectPending, true
	case o.MaxCalls > 0 && a.InboundCalls() >= o.MaxCalls:
		a.pendingInvites.Add(-1)
		reason, reject = RejectCalls, true
	case o.PacerOverrunHold > 0 && a.pacerOverranWithin(o.PacerOverrunHold):
		a.pendingInvites.Add(-1)
		reason, reject = RejectPacerOverrun, true
	}
	if !reject {
		return func() { a.pendingInvites.Add(-1) }, true
	}
	a.observer().InviteRejected(reason)
	if ok, held := a.overloadLog.allow(time.Now()); ok {
		a.log.Warn("sip: overload, INVITE refused with 503", "reason", reason.String(), "pending", a.pendingInvites.Load(), "source", req.Source(), "suppressed_before", held)
	}
	if reason == RejectShuttingDown {
		a.respond(req, tx, 503, "Service Unavailable (shutting down)")
	} else {
		a.respondRetryAfter(req, tx, "Service Unavailable (overload)")
	}
	return nil, false
}

// takePending counts one more pending INVITE unless limit (when positive)
// is reached; the count never exceeds the limit, even for a moment.
func (a *Agent) takePending(limit int64) bool {
	for {
		n := a.pendingInvites.Load()
		if limit > 0 && n >= limit {
			return false
		}
		if a.pendingInvites.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Drain makes the agent refuse new calls (503) while everything else —
// calls up, in-dialog requests, OPTIONS, REGISTER — is still served: the
// first step of a graceful shutdown, before Close.
func (a *Agent) Drain() { a.draining.Store(true) }

// Draining reports whether Drain was called.
func (a *Agent) Draining() bool { return a.draining.Load() }

func (a *Agent) pacerOverranWithin(d time.Duration) bool {
	last := a.cfg.Pacer.LastOverrun()
	return !last.IsZero() && time.Since(last) < d
}

// Pacer returns the pacer that drives the agent's RTP endpoints.
func (a *Agent) Pacer() *media.Pacer { return a.cfg.Pacer }

// respondRetryAfter answers 503 with Retry-After.
func (a *Agent) respondRetryAfter(req *sip.Request, tx sip.ServerTransaction, reason string) {
	ra := a.cfg.Overload.RetryAfter
	if ra <= 0 {
		ra = DefaultRetryAfter
	}
	secs := int(ra / time.Second)
	if secs < 1 {
		secs = 1
	}
	res := sip.NewResponseFromRequest(req, 503, reason, nil)
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(secs)))
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sip: respond 503 failed", "error", err)
	}
}
