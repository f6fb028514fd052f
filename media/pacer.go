package media

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-voice/switchboard/media/transport"
)

// Pacer drives the 20 ms send clock of many endpoints from a few
// goroutines — one per shard, GOMAXPROCS shards by default — instead of a
// ticker goroutine per endpoint. With thousands of calls, per-endpoint
// tickers cost as much CPU in timer and scheduler work as the sending
// itself (docs/BENCHMARKS.md); a shard wakes once per 20 ms and sends for
// all its endpoints in one pass.
//
// Endpoints with nothing to do (nothing to play, send or decode: a leg a
// bridge or echo feeds, a leg on hold) leave the 20 ms pass for a slow
// list, visited every slowEvery ticks only for their media timeout and
// RTCP reports; anything that gives them work again (Play, SendDTMF, a
// sink, a DTMF callback, the end of a bridge, Configure) puts them back
// at once. See Endpoint.idleNow for when an endpoint is idle, and
// minIdleInterval for the endpoints that never leave the 20 ms pass.
//
// Sources are read on the shard goroutine, so a Source that blocks delays
// every endpoint of its shard: Sources must not block (see Source).
type Pacer struct {
	shards []*pacerShard
	next   atomic.Uint32
	count  atomic.Int64 // endpoints attached
	// readers read the sockets of the pacer's UDP endpoints, one poller
	// per four shards (transport.Readers); nil where epoll is missing or when
	// SWITCHBOARD_MEDIA_READERS=goroutines asks for a reader goroutine
	// per socket instead.
	readers *transport.Readers
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once

	ticks    atomic.Uint64 // shard ticks run
	overruns atomic.Uint64 // shard ticks that took longer than FrameDurationMs
	lastOver atomic.Int64  // UnixNano of the last overrun, 0 if none
}

// slowEvery is how many 20 ms ticks pass between two visits of a shard's
// slow list (240 ms): the resolution of an idle endpoint's media timeout
// and RTCP schedule.
const slowEvery = 12

// demoteAfter is how many consecutive ticks with nothing to do move an
// endpoint to the slow list (100 ms): a leg between two prompts, or
// whose bridge is being rewired, stays on the 20 ms pass.
const demoteAfter = 5

// minIdleInterval is the shortest RTCP interval or media timeout an
// endpoint may have and still idle: four visits of the slow list, so
// neither is late by more than a quarter. Shorter ones (tests, mostly)
// keep their endpoint on the 20 ms pass.
const minIdleInterval = 4 * slowEvery * FrameDurationMs * time.Millisecond

// pacerShard is one goroutine's endpoints. The lists belong to the shard
// goroutine; other goroutines hand it changes (attach, detach, wake)
// through ops, under mu, which it takes once per tick.
type pacerShard struct {
	mu    sync.Mutex
	ops   []paceOp // changes queued for the next tick
	spare []paceOp // the other half of ops' double buffer

	// Owned by the shard goroutine.
	fast   []*Endpoint // ticked every 20 ms
	slow   []*Endpoint // idle: visited every slowEvery ticks
	passes uint64

	idle atomic.Int64 // len(slow), for Pacer.Idle

	// testHookDemote, set by tests before the shard runs, is called by
	// goIdle between publishing paceSlow and re-checking idleness: where
	// a waker's change may land.
	testHookDemote func(*Endpoint)
}

type paceOpKind uint8

const (
	paceAdd paceOpKind = iota + 1
	paceRemove
	paceWake
)

type paceOp struct {
	e    *Endpoint
	kind paceOpKind
}

// Where an endpoint is, as its wakers see it (paceSlot.state).
const (
	paceFast uint32 = iota // on the 20 ms pass, or not yet attached
	paceSlow               // idle on the slow list: wake it
	paceGone               // detached
)

// Which list an endpoint is on (paceSlot.list, shard goroutine only).
const (
	onNone uint8 = iota
	onFast
	onSlow
)

// paceSlot is an endpoint's place in its pacer shard.
type paceSlot struct {
	sh     *pacerShard   // set by Start, before the endpoint is attached
	state  atomic.Uint32 // paceFast, paceSlow or paceGone
	queued atomic.Bool   // a wake is queued and not yet applied
	// Shard goroutine only.
	list  uint8
	idx   int
	quiet int // consecutive ticks with nothing to do
}

// NewPacer starts a pacer with n shards (n <= 0 means GOMAXPROCS).
func NewPacer(n int) *Pacer { return newPacer(n, true) }

// newPacer makes a pacer whose shards run only when run is set
// (benchmarks drive an unstarted shard's pass themselves).
func newPacer(n int, run bool) *Pacer {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pacer{stop: make(chan struct{})}
	if os.Getenv("SWITCHBOARD_MEDIA_READERS") != "goroutines" {
		p.readers = transport.NewReaders(pollersFor(n))
	}
	for range n {
		sh := &pacerShard{}
		p.shards = append(p.shards, sh)
		if run {
			p.wg.Add(1)
			go p.run(sh)
		}
	}
	return p
}

// pollersFor is how many socket pollers (transport.Readers) a pacer of n
// shards runs: one per four shards, at least one. Spreading the sockets
// over more pollers makes every wake-up serve fewer of them: on the
// 2-vCPU test machine, the echo benchmark at GOMAXPROCS=2 cost 9.3–9.7 µs
// per packet with two pollers and 7.3–8.4 µs with one (docs/BENCHMARKS.md,
// "RTP near the floor"); at ~8 µs per packet one poller handles about
// 120,000 packets/s on a core. Machines with more cores were not measured.
func pollersFor(shards int) int { return max(1, (shards+3)/4) }

// Close stops the pacer's goroutines. Endpoints still attached stop
// sending.
func (p *Pacer) Close() {
	p.once.Do(func() {
		close(p.stop)
		p.wg.Wait()
		p.readers.Close()
	})
	p.wg.Wait()
}

// Len returns how many endpoints the pacer drives.
func (p *Pacer) Len() int { return int(p.count.Load()) }

// Idle returns how many of the pacer's endpoints are on the slow list
// (idle: not ticked every 20 ms).
func (p *Pacer) Idle() int {
	n := 0
	for _, sh := range p.shards {
		n += int(sh.idle.Load())
	}
	return n
}

func (p *Pacer) add(e *Endpoint) (remove func()) {
	sh := p.shards[int(p.next.Add(1))%len(p.shards)]
	e.pace.sh = sh
	p.count.Add(1)
	sh.push(paceOp{e, paceAdd})
	var once sync.Once
	return func() {
		once.Do(func() {
			p.count.Add(-1)
			e.pace.state.Store(paceGone)
			sh.push(paceOp{e, paceRemove})
		})
	}
}

// push queues a change for the shard's next tick. Cost: a lock and an
// append into a buffer that is reused, so no allocation once it has
// grown to the largest batch of changes per tick.
func (sh *pacerShard) push(op paceOp) {
	sh.mu.Lock()
	sh.ops = append(sh.ops, op)
	sh.mu.Unlock()
}

// wake puts an idle endpoint back on its shard's 20 ms pass, from the
// shard's next tick on. Everything that can give an endpoint work calls
// it after making the change; the shard re-checks idleness after
// publishing paceSlow, so a change is either seen by that check or finds
// paceSlow here. Cost when the endpoint is not idle: one atomic load.
func (e *Endpoint) wake() {
	if e.pace.state.Load() != paceSlow || e.pace.queued.Swap(true) {
		return
	}
	e.pace.sh.push(paceOp{e, paceWake})
}

func (p *Pacer) run(sh *pacerShard) {
	defer p.wg.Done()
	t := time.NewTicker(FrameDurationMs * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		start := time.Now()
		sh.pass(start)
		p.ticks.Add(1)
		if now := time.Now(); now.Sub(start) > FrameDurationMs*time.Millisecond {
			p.overruns.Add(1)
			p.lastOver.Store(now.UnixNano())
		}
	}
}

// pass is one 20 ms tick of the shard: apply the queued changes, tick
// every endpoint of the fast list (moving those idle for demoteAfter
// ticks to the slow list), and every slowEvery ticks visit the slow list.
func (sh *pacerShard) pass(now time.Time) {
	sh.mu.Lock()
	ops := sh.ops
	sh.ops = sh.spare[:0]
	sh.mu.Unlock()
	for _, op := range ops {
		sh.apply(op, now)
	}
	clear(ops) // keep no endpoint alive from the spare buffer
	sh.spare = ops[:0]

	for i := 0; i < len(sh.fast); {
		e := sh.fast[i]
		if !e.mediaTick() || !e.idleOK {
			e.pace.quiet = 0
			i++
			continue
		}
		if e.pace.quiet++; e.pace.quiet < demoteAfter || !e.goIdle() {
			i++
			continue
		}
		sh.move(e, onSlow) // the last endpoint now sits at i
	}

	sh.passes++
	if sh.passes%slowEvery != 0 {
		return
	}
	for i := 0; i < len(sh.slow); {
		e := sh.slow[i]
		if e.idleTick(now) {
			i++
			continue
		}
		sh.promote(e, now)
	}
}

// apply makes one queued change.
func (sh *pacerShard) apply(op paceOp, now time.Time) {
	e := op.e
	switch op.kind {
	case paceAdd:
		if e.pace.state.Load() == paceGone {
			return // detached before it was ever ticked
		}
		e.pace.list = onFast
		e.pace.idx = len(sh.fast)
		sh.fast = append(sh.fast, e)
	case paceRemove:
		sh.unlink(e)
		e.pace.list = onNone
	case paceWake:
		e.pace.queued.Store(false)
		if e.pace.list == onSlow {
			sh.promote(e, now)
		}
	}
}

// promote moves an idle endpoint back to the fast list; its RTP clock
// catches up with the time it spent idle (to the nearest tick: the tick
// that follows takes the clock as it was before this 20 ms).
func (sh *pacerShard) promote(e *Endpoint, now time.Time) {
	e.out.resume(now.Add(-FrameDuration / 2))
	e.pace.quiet = 0
	sh.move(e, onFast)
	e.pace.state.CompareAndSwap(paceSlow, paceFast)
}

// move takes e off its list and appends it to list to.
func (sh *pacerShard) move(e *Endpoint, to uint8) {
	sh.unlink(e)
	e.pace.list = to
	if to == onFast {
		e.pace.idx = len(sh.fast)
		sh.fast = append(sh.fast, e)
	} else {
		e.pace.idx = len(sh.slow)
		sh.slow = append(sh.slow, e)
		sh.idle.Add(1)
	}
}

// unlink removes e from the list it is on, moving that list's last
// endpoint into its place.
func (sh *pacerShard) unlink(e *Endpoint) {
	var l *[]*Endpoint
	switch e.pace.list {
	case onFast:
		l = &sh.fast
	case onSlow:
		l = &sh.slow
		sh.idle.Add(-1)
	default:
		return
	}
	s, i := *l, e.pace.idx
	last := len(s) - 1
	s[i] = s[last]
	s[i].pace.idx = i
	s[last] = nil
	*l = s[:last]
	e.pace.list = onNone
}

// Ticks returns how many 20 ms ticks the pacer's shards have run.
func (p *Pacer) Ticks() uint64 { return p.ticks.Load() }

// Overruns returns how many shard ticks took longer than their 20 ms
// period: the shard was late for its next tick, so every endpoint on it
// sent late (Go's ticker then drops the missed ticks). Counting costs two
// clock reads and an atomic add per shard tick, nothing per endpoint.
func (p *Pacer) Overruns() uint64 { return p.overruns.Load() }

// LastOverrun returns when a shard tick last overran (zero if never).
func (p *Pacer) LastOverrun() time.Time {
	if n := p.lastOver.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
