package framework

import (
	"github.com/switchboard-voice/switchboard/internal/workpool"
)

// actorDispatcher runs the server's actor mailboxes (calls, legs, rooms)
// on a pool of long-lived goroutines instead of a new goroutine per
// mailbox run, protoactor's default. A call's actors run a dozen times in
// its life, each time deep enough to grow a fresh goroutine's stack two or
// three times (copying it); a worker keeps its grown stack between runs.
// No run ever waits for another (see workpool).
type actorDispatcher struct {
	*workpool.Pool
	throughput int
}

// Throughput is how many messages a mailbox run handles before it yields
// (protoactor's default, 300).
func (d actorDispatcher) Throughput() int { return d.throughput }

// Schedule runs fn (a mailbox run) on the pool.
func (d actorDispatcher) Schedule(fn func()) { d.Go(fn) }
