package sip

import (
	"sync/atomic"
	"time"
)

// The SIP UDP socket's queueing delay: how long datagrams waited in the
// kernel's receive queue before the read loop read them, from the
// kernel's receive timestamp (SO_TIMESTAMPNS; Linux). It is the overload
// signal closest to what fails first: once the read loop falls behind
// the offered requests, the queue fills, the kernel drops datagrams
// indiscriminately — the ACKs and BYEs of accepted calls with the new
// INVITEs — and every dropped request comes back 500 ms later as a
// retransmission, more load on a saturated server. The scheduler's
// delay (schedLatency) does not see this wait: it starts when a
// goroutine is runnable, and a datagram becomes one only once read.
//
// The delay is the least delay of the datagrams read in a 50 ms window
// and of the first one read after it: spikes (one garbage collection
// pause, one datagram that sat behind a burst) do not count; a window in
// which every datagram had waited means the reader is behind. (The read
// after the window counts so that a quiet spell ends the signal: after
// one, the window is old, and the datagram that closes it had no wait.)
//
// A reader that is behind is not yet a problem: near its capacity the
// server runs with tens of milliseconds queued now and then (at 8,000–
// 9,000 calls/s on two cores, with the load generator beside it, more
// than 50 ms for whole windows) and loses nothing. What is one is the
// queue overflowing, which the kernel reports with each datagram
// (SO_RXQ_OVFL: the socket's drop count). So new INVITEs are refused by
// the early shedding (shed.go) — cheap for the read loop, so the queue
// drains — while the delay is above OverloadOptions.MaxReadDelay and the
// kernel has dropped datagrams in the last readDropMemory.
//
// This needs the large receive buffer Start asks for (sipUDPReadBuffer;
// it warns when it gets less). With Linux's stock 208 KiB a full queue
// holds a few milliseconds of datagrams, the delay never reaches the
// limit, and nothing is refused on it. Refusing for a moment after every
// drop instead kept every accepted call but refused 93 % of a burst the
// server could carry half of: with a queue that small, every pause of the
// read loop drops (docs/BENCHMARKS.md).
//
// The kernel turns stamping on through deferred work when the first
// socket asks for it; datagrams read before that are stamped as they are
// read and count as no wait (the first moments after start only).

// readDelayWindow is the window over which the least delay is taken.
const readDelayWindow = 50 * time.Millisecond

// DefaultMaxReadDelay is OverloadOptions.MaxReadDelay when unset.
const DefaultMaxReadDelay = 50 * time.Millisecond

// readDropMemory is how long after the kernel last dropped a datagram
// the read delay still refuses INVITEs.
const readDropMemory = 5 * time.Second

// readDelay follows the receive queue's delay. observe is called by the
// read loop alone; recent by anyone.
type readDelay struct {
	// The read loop's window.
	winStart int64 // UnixNano
	winMin   int64
	samples  int

	drops uint32 // the kernel's drop count as last reported

	last    atomic.Int64  // ns: the least delay of the last full window
	lastAt  atomic.Int64  // UnixNano the window ended
	dropped atomic.Uint64 // datagrams the kernel dropped (queue full) since the socket opened
	dropAt  atomic.Int64  // UnixNano of the read that saw the drop count rise

	// testHookRead, when set, runs before each read (tests slow the
	// read loop down with it).
	testHookRead atomic.Pointer[func()]
}

// observe takes the delay of a datagram read at now (both ns).
func (d *readDelay) observe(now, delay int64) {
	delay = max(delay, 0) // the wall clock stepped back
	if d.samples > 0 && now-d.winStart >= int64(readDelayWindow) {
		d.last.Store(min(d.winMin, delay))
		d.lastAt.Store(now)
		d.samples = 0
	}
	if d.samples == 0 {
		d.winStart, d.winMin = now, delay
	} else {
		d.winMin = min(d.winMin, delay)
	}
	d.samples++
}

// observeDrops takes the kernel's drop count that came with a datagram
// read at now.
func (d *readDelay) observeDrops(now int64, drops uint32) {
	if drops != d.drops {
		d.dropped.Add(uint64(drops - d.drops)) // the count wraps at 2^32
		d.drops = drops
		d.dropAt.Store(now)
	}
}

// shedding reports whether new INVITEs are refused: the delay is above
// limit and the kernel has dropped datagrams within readDropMemory.
func (d *readDelay) shedding(now time.Time, limit time.Duration) bool {
	at := d.dropAt.Load()
	return at != 0 && now.UnixNano()-at < int64(readDropMemory) && d.recent(now) > limit
}

// recent is the least delay of the last full window, or zero when that
// window ended more than two windows before now (datagrams stopped
// coming: nothing is queued).
func (d *readDelay) recent(now time.Time) time.Duration {
	if now.UnixNano()-d.lastAt.Load() > 2*int64(readDelayWindow) {
		return 0
	}
	return time.Duration(d.last.Load())
}

func (a *Agent) maxReadDelay() time.Duration {
	return overloadLimit(a.cfg.Overload.MaxReadDelay, DefaultMaxReadDelay)
}

// ReadDelay is the SIP UDP socket's recent queueing delay that the early
// shedding compares with OverloadOptions.MaxReadDelay: the least wait
// of the datagrams read in the last 50 ms window (0 when nothing has
// waited, and where the kernel gives no receive timestamps).
func (a *Agent) ReadDelay() time.Duration { return a.readDelay.recent(time.Now()) }

// ReadDrops is how many datagrams the kernel dropped from the SIP UDP
// socket's full receive queue (Linux; zero elsewhere).
func (a *Agent) ReadDrops() uint64 { return a.readDelay.dropped.Load() }
