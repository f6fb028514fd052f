package transport

import "sync/atomic"

// Readers is a set of socket pollers (epoll on Linux) that read the
// sockets of many UDP transports, instead of a reader goroutine per
// socket. The media Pacer makes one with a poller per shard. A poller
// reads every socket that became readable in one wake-up, one datagram
// per socket (level-triggered). Transports given Readers bind raw
// sockets that Go's netpoller never sees (see UDP).
type Readers struct {
	pollers []*rxPoller
	next    atomic.Uint32
}

// NewReaders starts n pollers. It returns nil when the platform has no
// poller (then each UDP transport reads its sockets with goroutines).
func NewReaders(n int) *Readers {
	r := &Readers{}
	for range max(n, 1) {
		pl, err := newRxPoller()
		if err != nil {
			r.Close()
			return nil
		}
		r.pollers = append(r.pollers, pl)
	}
	return r
}

// Len returns how many pollers r runs (0 for a nil r).
func (r *Readers) Len() int {
	if r == nil {
		return 0
	}
	return len(r.pollers)
}

// pick returns the poller for a new transport's sockets, or nil.
func (r *Readers) pick() *rxPoller {
	if r.Len() == 0 {
		return nil
	}
	return r.pollers[int(r.next.Add(1))%len(r.pollers)]
}

// has reports whether pl is one of r's pollers.
func (r *Readers) has(pl *rxPoller) bool {
	if r == nil {
		return false
	}
	for _, x := range r.pollers {
		if x == pl {
			return true
		}
	}
	return false
}

// Close stops the pollers; sockets still registered are no longer read.
func (r *Readers) Close() {
	if r == nil {
		return
	}
	for _, pl := range r.pollers {
		pl.close()
	}
	r.pollers = nil
}
