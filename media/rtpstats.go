package media

import (
	"math"
	"sync/atomic"
	"time"
)

// recvStats keeps the RFC 3550 receive statistics of one stream (appendix
// A.1 and A.8): extended highest sequence number, packets expected and
// received, and the interarrival jitter estimate.
//
// One goroutine (the endpoint's reader) calls update, so the state is kept
// without a lock; after each packet update publishes what snapshot needs in
// two atomic words, and snapshot may run on any goroutine. The two words
// are stored separately, so a snapshot may pair the counts of one packet
// with the jitter of the previous one; expected and received always come
// from the same packet.
type recvStats struct {
	recvState // owned by the goroutine calling update
	// counts is expected<<32 | received, both modulo 2^32 (2.7 years of
	// 20 ms packets); zero before the first packet.
	counts atomic.Uint64
	// jitter is jitter16<<32 | clockRate, jitter16 saturated to 32 bits.
	jitter atomic.Uint64
	// source is ssrc<<32 | extended highest sequence number, for RTCP
	// report blocks (read on the sender tick).
	source atomic.Uint64
}

type recvState struct {
	ssrc     uint32
	started  bool
	baseSeq  uint32
	maxSeq   uint16
	cycles   uint32
	received uint64
	// seen has bit i set when maxSeq-i arrived: duplicates within the last
	// 64 packets are recognised and not counted as received.
	seen uint64
	dups uint64
	// jitter in timestamp units, scaled by 16 as in RFC 3550 A.8.
	jitter16    int64
	lastTransit int64
	haveTransit bool
	clockRate   int
}

// update records a packet of ssrc with seq and RTP timestamp ts that
// arrived at now. A new SSRC restarts the statistics. It must not be
// called from two goroutines at once.
func (s *recvStats) update(ssrc uint32, seq uint16, ts uint32, now time.Time, clockRate int) {
	s.record(ssrc, seq, ts, now, clockRate)
	ext := uint64(s.cycles) + uint64(s.maxSeq)
	expected := ext - uint64(s.baseSeq) + 1
	s.counts.Store(expected<<32 | s.received&math.MaxUint32)
	j := uint64(min(max(s.jitter16, 0), math.MaxUint32))
	s.jitter.Store(j<<32 | uint64(uint32(s.clockRate)))
	s.source.Store(uint64(s.ssrc)<<32 | ext&math.MaxUint32)
}

func (s *recvStats) record(ssrc uint32, seq uint16, ts uint32, now time.Time, clockRate int) {
	if !s.started || ssrc != s.ssrc || clockRate != s.clockRate {
		s.recvState = recvState{started: true, ssrc: ssrc, baseSeq: uint32(seq), maxSeq: seq, clockRate: clockRate}
	} else {
		delta := seq - s.maxSeq
		switch {
		case delta > 0 && delta < 3000: // in order, possibly with a gap
			if seq < s.maxSeq {
				s.cycles += 1 << 16 // wrapped
			}
			s.maxSeq = seq
			if delta >= 64 {
				s.seen = 0
			} else {
				s.seen <<= delta
			}
			s.seen |= 1
		case delta == 0 || delta >= 0xffff-100: // duplicate or late packet
			back := s.maxSeq - seq
			if back < 64 {
				if s.seen&(1<<back) != 0 {
					s.dups++
					return
				}
				s.seen |= 1 << back
			}
		default: // a big jump: the sender restarted its numbering
			s.recvState = recvState{started: true, ssrc: ssrc, baseSeq: uint32(seq), maxSeq: seq, clockRate: clockRate}
		}
	}
	if s.received == 0 {
		s.seen = 1
	}
	s.received++
	if clockRate <= 0 {
		return
	}
	// Transit is kept modulo 2^32 like the RTP timestamp (RFC 3550 A.8),
	// so the difference stays right when the timestamp wraps.
	// (Seconds and nanoseconds apart: UnixNano × clock rate overflows.)
	arrival := now.Unix()*int64(clockRate) + int64(now.Nanosecond())*int64(clockRate)/int64(time.Second)
	transit := int64(uint32(arrival) - ts)
	if s.haveTransit {
		d := int64(int32(uint32(transit) - uint32(s.lastTransit)))
		if d < 0 {
			d = -d
		}
		s.jitter16 += d - (s.jitter16+8)>>4
	}
	s.lastTransit, s.haveTransit = transit, true
}

// snapshot returns expected, lost and jitter. It is safe to call from any
// goroutine, concurrently with update.
func (s *recvStats) snapshot() (expected, lost uint64, jitter time.Duration) {
	c := s.counts.Load()
	expected, received := c>>32, c&math.MaxUint32
	if expected > received {
		lost = expected - received
	}
	j := s.jitter.Load()
	if rate := j & math.MaxUint32; rate > 0 {
		jitter = time.Duration(j>>32>>4) * time.Second / time.Duration(rate)
	}
	return expected, lost, jitter
}

// receptionState is what an RTCP reception report block about the current
// source needs (RFC 3550 section 6.4.1 and appendix A.3).
type receptionState struct {
	ssrc       uint32
	extHighest uint32 // cycles<<16 | highest sequence number
	expected   uint64
	received   uint64 // unique packets (duplicates not counted)
	jitterTS   uint32 // interarrival jitter in timestamp units
}

// reception returns the state for a report block; ok is false before the
// first packet. Like snapshot it reads the published words, so it is safe
// from any goroutine (the words may be one packet apart).
func (s *recvStats) reception() (r receptionState, ok bool) {
	c := s.counts.Load()
	if c == 0 {
		return r, false
	}
	src, j := s.source.Load(), s.jitter.Load()
	return receptionState{
		ssrc:       uint32(src >> 32),
		extHighest: uint32(src),
		expected:   c >> 32,
		received:   c & math.MaxUint32,
		jitterTS:   uint32(j>>32) >> 4,
	}, true
}
