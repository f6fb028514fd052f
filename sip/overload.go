package sip

import (
	"strconv"
	"sync"
	"sync/atomic"
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
	// ringing (e.g. a flow dialling someone) count. Positive is a fixed
	// limit; negative disables it. Zero, the default, scales it with the
	// call rate: the larger of DefaultMaxPendingInvites and the INVITE
	// transactions finished in the last second × SetupBudget. By Little's
	// law pending INVITEs are the setup rate × the mean setup time, so a
	// fixed count is
	// a time budget that shrinks as the rate grows (200 is 500 ms at 400
	// calls/s but 25 ms at 8,000, less than a scheduling hiccup on a busy
	// machine); the scaled limit keeps the budget and still refuses once
	// setups queue up.
	MaxPendingInvites int
	// SetupBudget is the mean setup time the scaled pending limit allows
	// (MaxPendingInvites zero); zero means DefaultSetupBudget.
	SetupBudget time.Duration
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
	// MaxSchedLatency is the Go scheduler's queueing delay (the 90th
	// percentile of how long runnable goroutines waited for a CPU, per
	// 50 ms window, once it has lasted four windows) above which new
	// INVITEs are refused with a stateless 503 in the transport's read
	// loop, before they are parsed (shed.go): every request is handled
	// by a goroutine, so this is the delay the ACKs and BYEs of accepted
	// calls meet. Zero means DefaultMaxSchedLatency; negative turns the
	// check off.
	MaxSchedLatency time.Duration
	// MaxReadDelay is how long SIP datagrams may wait in the UDP
	// socket's receive queue (the least wait of those read in a 50 ms
	// window, from the kernel's receive timestamps; Linux) while the
	// kernel is dropping datagrams from that full queue (within the last
	// 5 s) before new INVITEs are refused with a stateless 503 in the
	// read loop: the read loop is behind the offered load, and the
	// kernel drops the ACKs and BYEs of accepted calls with everything
	// else (readdelay.go). Zero means DefaultMaxReadDelay; negative
	// turns the check off.
	MaxReadDelay time.Duration
}

// DefaultMaxPendingInvites is the least pending-INVITE limit when
// OverloadOptions.MaxPendingInvites is unset (it then scales with the
// call rate above this).
const DefaultMaxPendingInvites = 200

// DefaultSetupBudget is OverloadOptions.SetupBudget when unset: the scaled
// pending limit at R calls/s is R/2, above DefaultMaxPendingInvites from
// 400 calls/s.
const DefaultSetupBudget = 500 * time.Millisecond

// DefaultRetryAfter is OverloadOptions.RetryAfter when unset.
const DefaultRetryAfter = 5 * time.Second

// PendingInvites returns how many inbound INVITE transactions are in
// progress (see OverloadOptions.MaxPendingInvites).
func (a *Agent) PendingInvites() int { return int(a.pendingInvites.Load()) }

// ReadLoopRequests returns how many requests the UDP read loop has
// taken past sipgo's transaction layer: initial INVITEs (our own
// transaction, invite_tx.go), the ACKs of our 2xx to INVITE
// (ack_fast.go) and the BYEs of answered inbound calls (bye_fast.go).
// Each request that goes the sipgo way instead is still handled, only
// dearer; a share far below the calls' count says which.
func (a *Agent) ReadLoopRequests() (invites, acks, byes int64) {
	return a.readLoopInvites.Load(), a.fastAcks.Load(), a.fastByes.Load()
}

// InboundCalls returns how many inbound legs are up or being set up.
func (a *Agent) InboundCalls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.uas)
}

// admitInvite counts a new INVITE transaction as pending and decides
// whether it may proceed. When it may, the caller must call the returned
// release once the transaction is over (it may be called again, and
// earlier: an answered call waiting late for its ACK stops counting);
// when it may not, the 503 has been sent.
func (a *Agent) admitInvite(req *sip.Request, tx sip.ServerTransaction) (release func(), ok bool) {
	o := a.cfg.Overload
	now := time.Now()
	limit := a.pendingLimit(now)
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
		var released atomic.Bool
		return func() {
			if released.CompareAndSwap(false, true) {
				a.pendingInvites.Add(-1)
				a.setups.add(time.Now())
			}
		}, true
	}
	a.observer().InviteRejected(reason)
	if ok, held := a.overloadLog.allow(now); ok {
		a.log.Warn("sip: overload, INVITE refused with 503", "reason", reason.String(), "pending", a.pendingInvites.Load(), "limit", limit, "source", req.Source(), "suppressed_before", held)
	}
	if reason == RejectShuttingDown {
		a.respond(req, tx, 503, "Service Unavailable (shutting down)")
	} else {
		a.respondRetryAfter(req, tx, "Service Unavailable (overload)")
	}
	return nil, false
}

// pendingLimit is the pending-INVITE limit now (see
// OverloadOptions.MaxPendingInvites); zero or less means none.
func (a *Agent) pendingLimit(now time.Time) int64 {
	o := a.cfg.Overload
	if o.MaxPendingInvites != 0 {
		return int64(o.MaxPendingInvites)
	}
	budget := o.SetupBudget
	if budget <= 0 {
		budget = DefaultSetupBudget
	}
	return scaledPendingLimit(a.setups.perSecond(now), budget)
}

// scaledPendingLimit is the pending-INVITE limit when perSecond INVITE
// transactions finish a second: what that rate keeps pending with setups
// taking budget on average (Little's law), and never less than
// DefaultMaxPendingInvites. The rate is of transactions finished, not
// admitted, so a server that stops finishing them (stalled, saturated)
// drops to the floor within a second instead of admitting at the rate it
// is offered.
func scaledPendingLimit(perSecond int64, budget time.Duration) int64 {
	return max(DefaultMaxPendingInvites, perSecond*int64(budget/time.Millisecond)/1000)
}

// inviteRate counts INVITE transactions finished per second of the
// monotonic clock, for the scaled pending limit. Cost: one uncontended
// mutex per INVITE finished and one per INVITE checked.
type inviteRate struct {
	mu    sync.Mutex
	epoch time.Time // first use; seconds count from it
	sec   int64     // the second cur counts
	cur   int64
	prev  int64 // the count of second sec-1 (0 if none came)
}

// roll moves the window to the second now falls in.
func (r *inviteRate) roll(now time.Time) {
	if r.epoch.IsZero() {
		r.epoch = now
	}
	s := int64(now.Sub(r.epoch) / time.Second)
	switch {
	case s == r.sec+1:
		r.prev, r.cur, r.sec = r.cur, 0, s
	case s > r.sec+1:
		r.prev, r.cur, r.sec = 0, 0, s
	}
}

func (r *inviteRate) add(now time.Time) {
	r.mu.Lock()
	r.roll(now)
	r.cur++
	r.mu.Unlock()
}

// perSecond is the rate now: the last whole second's count, or the
// current second's so far when that is already more (a rising rate
// raises the limit within the second).
func (r *inviteRate) perSecond(now time.Time) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.roll(now)
	return max(r.prev, r.cur)
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

// retryAfterSecs is the Retry-After of overload 503s, in whole seconds.
func (a *Agent) retryAfterSecs() int {
	ra := a.cfg.Overload.RetryAfter
	if ra <= 0 {
		ra = DefaultRetryAfter
	}
	return max(1, int(ra/time.Second))
}

// SchedLatency is the Go scheduler's recent queueing delay that the early
// shedding compares with OverloadOptions.MaxSchedLatency (0 before the
// agent starts).
func (a *Agent) SchedLatency() time.Duration { return a.shed.latency.recent() }

// refused records that an INVITE was just refused for overload.
func (a *Agent) refused(now time.Time) { a.lastRefused.Store(now.UnixNano()) }

// refusedSince reports whether an INVITE was refused for overload at t
// or later.
func (a *Agent) refusedSince(t time.Time) bool {
	at := a.lastRefused.Load()
	return at != 0 && at >= t.UnixNano()
}

// respondRetryAfter answers 503 with Retry-After.
func (a *Agent) respondRetryAfter(req *sip.Request, tx sip.ServerTransaction, reason string) {
	a.refused(time.Now())
	res := sip.NewResponseFromRequest(req, 503, reason, nil)
	res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(a.retryAfterSecs())))
	if err := tx.Respond(res); err != nil {
		a.log.Debug("sip: respond 503 failed", "error", err)
	}
}
