package media

import (
	"os"
	"runtime"
	"slices"
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
// Sources are read on the shard goroutine, so a Source that blocks delays
// every endpoint of its shard: Sources must not block (see Source).
type Pacer struct {
	shards []*pacerShard
	next   atomic.Uint32
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

type pacerShard struct {
	mu   sync.Mutex // serialises changes; ticks read snap without locking
	eps  []*Endpoint
	snap atomic.Pointer[[]*Endpoint]
}

// NewPacer starts a pacer with n shards (n <= 0 means GOMAXPROCS).
func NewPacer(n int) *Pacer {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pacer{stop: make(chan struct{})}
	if os.Getenv("SWITCHBOARD_MEDIA_READERS") != "goroutines" {
		p.readers = transport.NewReaders(pollersFor(n))
	}
	for range n {
		sh := &pacerShard{}
		empty := []*Endpoint{}
		sh.snap.Store(&empty)
		p.shards = append(p.shards, sh)
		p.wg.Add(1)
		go p.run(sh)
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
func (p *Pacer) Len() int {
	n := 0
	for _, sh := range p.shards {
		n += len(*sh.snap.Load())
	}
	return n
}

func (p *Pacer) add(e *Endpoint) (remove func()) {
	sh := p.shards[int(p.next.Add(1))%len(p.shards)]
	sh.mu.Lock()
	sh.eps = append(sh.eps, e)
	snap := slices.Clone(sh.eps)
	sh.snap.Store(&snap)
	sh.mu.Unlock()
	return func() {
		sh.mu.Lock()
		if i := slices.Index(sh.eps, e); i >= 0 {
			sh.eps = slices.Delete(sh.eps, i, i+1)
			snap := slices.Clone(sh.eps)
			sh.snap.Store(&snap)
		}
		sh.mu.Unlock()
	}
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
		for _, e := range *sh.snap.Load() {
			e.mediaTick()
		}
		p.ticks.Add(1)
		if now := time.Now(); now.Sub(start) > FrameDurationMs*time.Millisecond {
			p.overruns.Add(1)
			p.lastOver.Store(now.UnixNano())
		}
	}
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
