// Package workpool runs short-lived functions on long-lived goroutines.
//
// A goroutine starts with a small stack, and the per-call work of a
// server (an INVITE's handling, an actor's mailbox run, a call flow) goes
// deep enough to grow it two or three times, copying it each time. At
// thousands of calls a second that copying was a tenth of the server's
// CPU. A pool worker keeps its grown stack from one function to the next
// (until the garbage collector shrinks it while idle).
//
// Go never makes a function wait: it goes to an idle worker if there is
// one, else to a new worker while there are fewer than the cap, else to a
// plain goroutine. So functions that block (for an ACK, for a whole call)
// are fine; past the cap they simply cost what a goroutine costs.
package workpool

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a set of worker goroutines. The zero value is not usable; use
// New. A nil *Pool runs each function on a new goroutine.
//
// Idle workers wait on a stack, each on its own channel: Go hands a
// function to the worker that went idle last (its stack is the most
// likely to be grown and in cache), and no two workers wait on the same
// channel (one shared channel had every idle worker's select on one lock,
// which at thousands of functions a second cost more than the stack
// copies it saved). A timer sends home the workers idle longer than
// idleExit.
type Pool struct {
	max      int
	idleExit time.Duration

	mu      sync.Mutex
	idle    []*worker // the worker idle longest first
	workers int
	closed  bool
	reaping bool // the reaper timer is armed
	reaper  *time.Timer

	started atomic.Int64 // workers started, ever
	spilled atomic.Int64 // functions given a plain goroutine
}

type worker struct {
	next      chan func() // nil: leave
	idleSince time.Time
}

// BlockingMax is the cap of the pools whose functions may block for a
// whole call (the SIP agent's request handling, the framework's call
// flows): one worker per call up at a few thousand calls, with room to
// spare; past it, functions get plain goroutines.
const BlockingMax = 16384

// New returns a pool of at most max workers; a worker idle for idleExit
// leaves.
func New(max int, idleExit time.Duration) *Pool {
	return &Pool{max: max, idleExit: idleExit}
}

// Go runs fn on an idle worker, a new worker, or a new goroutine, in that
// order of preference. It never waits for a worker.
func (p *Pool) Go(fn func()) {
	if p == nil {
		go fn()
		return
	}
	p.mu.Lock()
	if k := len(p.idle); k > 0 {
		w := p.idle[k-1]
		p.idle[k-1] = nil
		p.idle = p.idle[:k-1]
		p.mu.Unlock()
		w.next <- fn // buffered: never blocks
		return
	}
	if !p.closed && p.workers < p.max {
		p.workers++
		p.mu.Unlock()
		p.started.Add(1)
		go p.work(&worker{next: make(chan func(), 1)}, fn)
		return
	}
	p.mu.Unlock()
	p.spilled.Add(1)
	go fn()
}

func (p *Pool) work(w *worker, fn func()) {
	for fn != nil {
		fn()
		p.mu.Lock()
		if p.closed {
			p.workers--
			p.mu.Unlock()
			return
		}
		w.idleSince = time.Now()
		p.idle = append(p.idle, w)
		if !p.reaping {
			p.reaping = true
			if p.reaper == nil {
				p.reaper = time.AfterFunc(p.idleExit, p.reap)
			} else {
				p.reaper.Reset(p.idleExit)
			}
		}
		p.mu.Unlock()
		fn = <-w.next
	}
}

// reap sends home the workers idle for idleExit or longer, and comes
// back while any worker is idle.
func (p *Pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].idleSince) >= p.idleExit {
		p.idle[n].next <- nil
		n++
	}
	p.workers -= n
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle) : len(p.idle)+n])
	if len(p.idle) == 0 || p.closed {
		p.reaping = false
		return
	}
	p.reaper.Reset(p.idleExit - now.Sub(p.idle[0].idleSince))
}

// Close sends the idle workers home; busy ones leave after their
// function. Functions given to Go after Close run on plain goroutines.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, w := range p.idle {
		w.next <- nil
	}
	p.workers -= len(p.idle)
	p.idle = nil
	if p.reaper != nil {
		p.reaper.Stop()
	}
}

// Workers is how many workers there are now, busy or idle.
func (p *Pool) Workers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers
}

// Started is how many workers were ever started.
func (p *Pool) Started() int64 { return p.started.Load() }

// Spilled is how many functions ran on plain goroutines (every worker
// busy and the cap reached, or the pool closed).
func (p *Pool) Spilled() int64 { return p.spilled.Load() }
