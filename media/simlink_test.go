package media

import (
	"math"
	"math/rand"
	"sort"
	"time"
)

// simLink is a seeded, deterministic model of the IP path of one RTP
// stream, for tests: packets leave every Interval; each is lost with
// probability Loss, otherwise delayed by a random one-way delay, sometimes
// held back further (Reorder) and sometimes delivered twice (Duplicate).
// The same seed gives the same packets, delays and arrival order.
type simLink struct {
	Seed int64
	// Loss is the probability that a packet is lost.
	Loss float64
	// Delay is the mean one-way delay, Jitter its standard deviation:
	// normally distributed (cut off at 0), or uniform over
	// Delay ± √3·Jitter when Uniform is set.
	Delay, Jitter time.Duration
	Uniform       bool
	// Reorder is the probability that a packet is held back by one to
	// three extra intervals (so later packets overtake it).
	Reorder float64
	// Duplicate is the probability that a packet arrives twice (the copy
	// up to one interval later).
	Duplicate float64
	// Interval is the packet spacing (20 ms if zero).
	Interval time.Duration
}

// simPacket is one delivery at the receiver.
type simPacket struct {
	Index   int // which packet of the stream (0, 1, ...)
	Seq     uint16
	TS      uint32
	Arrival time.Time
	Delay   time.Duration // one-way delay this delivery took
	Dup     bool          // a second copy
}

// simRun is what the link did to n packets.
type simRun struct {
	Packets []simPacket // deliveries in arrival order
	Lost    []bool      // by packet index
}

// run sends n packets numbered from seq0 and ts0 (advancing by step per
// packet), the first at start.
func (l simLink) run(n int, start time.Time, seq0 uint16, ts0, step uint32) simRun {
	rng := rand.New(rand.NewSource(l.Seed))
	iv := l.Interval
	if iv == 0 {
		iv = 20 * time.Millisecond
	}
	r := simRun{Lost: make([]bool, n)}
	for i := range n {
		// Draw every random number for every packet, so changing one
		// probability does not reshuffle the others.
		lossDraw, reoDraw, dupDraw := rng.Float64(), rng.Float64(), rng.Float64()
		var jit float64
		if l.Uniform {
			jit = (rng.Float64()*2 - 1) * math.Sqrt(3)
		} else {
			jit = rng.NormFloat64()
		}
		extra := time.Duration(1+rng.Intn(3)) * iv
		dupLag := time.Duration(rng.Int63n(int64(iv)))
		if lossDraw < l.Loss {
			r.Lost[i] = true
			continue
		}
		d := max(l.Delay+time.Duration(jit*float64(l.Jitter)), 0)
		if reoDraw < l.Reorder {
			d += extra
		}
		sent := start.Add(time.Duration(i) * iv)
		p := simPacket{Index: i, Seq: seq0 + uint16(i), TS: ts0 + uint32(i)*step, Arrival: sent.Add(d), Delay: d}
		r.Packets = append(r.Packets, p)
		if dupDraw < l.Duplicate {
			p.Dup, p.Arrival, p.Delay = true, p.Arrival.Add(dupLag), p.Delay+dupLag
			r.Packets = append(r.Packets, p)
		}
	}
	sort.SliceStable(r.Packets, func(a, b int) bool { return r.Packets[a].Arrival.Before(r.Packets[b].Arrival) })
	return r
}

// lostCount is how many packets the link dropped.
func (r simRun) lostCount() int {
	n := 0
	for _, l := range r.Lost {
		if l {
			n++
		}
	}
	return n
}

// jitter is the RFC 3550 interarrival jitter the link applied: the mean
// |D| between consecutive first deliveries in arrival order, from the
// delays the link chose (what the receiver's estimate should converge to).
func (r simRun) jitter() time.Duration {
	var sum time.Duration
	var n int
	var prev time.Duration
	have := false
	for _, p := range r.Packets {
		if p.Dup {
			continue
		}
		if have {
			d := p.Delay - prev
			sum += max(d, -d)
			n++
		}
		prev, have = p.Delay, true
	}
	if n == 0 {
		return 0
	}
	return sum / time.Duration(n)
}
