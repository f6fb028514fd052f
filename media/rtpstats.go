package media

import (
	"sync"
	"time"
)

// recvStats keeps the RFC 3550 receive statistics of one stream (appendix
// A.1 and A.8): extended highest sequence number, packets expected and
// received, and the interarrival jitter estimate. The reader goroutine
// updates it per packet; Stats reads it.
type recvStats struct {
	mu sync.Mutex
	recvState
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
// arrived at now. A new SSRC restarts the statistics.
func (s *recvStats) update(ssrc uint32, seq uint16, ts uint32, now time.Time, clockRate int) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// snapshot returns expected, lost and jitter.
func (s *recvStats) snapshot() (expected, lost uint64, jitter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return 0, 0, 0
	}
	ext := uint64(s.cycles) + uint64(s.maxSeq)
	expected = ext - uint64(s.baseSeq) + 1
	if expected > s.received {
		lost = expected - s.received
	}
	if s.clockRate > 0 {
		jitter = time.Duration(s.jitter16>>4) * time.Second / time.Duration(s.clockRate)
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
// first packet.
func (s *recvStats) reception() (r receptionState, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return r, false
	}
	ext := s.cycles + uint32(s.maxSeq)
	return receptionState{
		ssrc:       s.ssrc,
		extHighest: ext,
		expected:   uint64(s.cycles) + uint64(s.maxSeq) - uint64(s.baseSeq) + 1,
		received:   s.received,
		jitterTS:   uint32(s.jitter16 >> 4),
	}, true
}
