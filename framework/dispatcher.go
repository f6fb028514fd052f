package framework

import (
	"sync/atomic"
	"time"
)

// actorDispatcher runs the server's actor mailboxes (calls, legs, rooms)
// on a few long-lived goroutines instead of a new goroutine per mailbox
// run, protoactor's default. A call's actors run a dozen times in its
// life, each time deep enough to grow a fresh goroutine's stack two or
// three times (copying it); a worker keeps its grown stack between runs.
// A run is handed to an idle worker if there is one, else to a new worker
// while there are fewer than maxWorkers, else to a plain goroutine: no
// run ever waits for another. Workers idle for idleExit leave; close
// sends every worker home (later runs get plain goroutines).
type actorDispatcher struct {
	throughput int
	maxWorkers int32
	idleExit   time.Duration

	work    chan func() // unbuffered: a send succeeds only to an idle worker
	workers atomic.Int32
	started atomic.Int64 // workers started, ever (tests)
	spilled atomic.Int64 // runs given a plain goroutine (all workers busy, or closed)
	done    chan struct{}
	closed  atomic.Bool
}

func newActorDispatcher(throughput, maxWorkers int, idleExit time.Duration) *actorDispatcher {
	return &actorDispatcher{throughput: throughput, maxWorkers: int32(maxWorkers), idleExit: idleExit,
		work: make(chan func()), done: make(chan struct{})}
}

// Throughput is how many messages a mailbox run handles before it yields
// (protoactor's default, 300).
func (d *actorDispatcher) Throughput() int { return d.throughput }

// Schedule runs fn (a mailbox run) on an idle worker, a new worker, or a
// new goroutine, in that order of preference.
func (d *actorDispatcher) Schedule(fn func()) {
	select {
	case d.work <- fn:
		return
	default:
	}
	if !d.closed.Load() {
		if d.workers.Add(1) <= d.maxWorkers {
			d.started.Add(1)
			go d.worker(fn)
			return
		}
		d.workers.Add(-1)
	}
	d.spilled.Add(1)
	go fn()
}

func (d *actorDispatcher) worker(fn func()) {
	defer d.workers.Add(-1)
	fn()
	idle := time.NewTimer(d.idleExit)
	defer idle.Stop()
	for {
		select {
		case fn := <-d.work:
			fn()
			idle.Reset(d.idleExit)
		case <-idle.C:
			return
		case <-d.done:
			return
		}
	}
}

// close stops the idle workers; busy ones leave after their run.
func (d *actorDispatcher) close() {
	if d.closed.CompareAndSwap(false, true) {
		close(d.done)
	}
}
