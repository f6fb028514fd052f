package sip

import (
	"bytes"
	"hash/maphash"
	"net"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Early shedding: under overload a new INVITE is refused in the
// transport's read loop, from its raw bytes, before sipgo parses it, makes
// a transaction or starts a goroutine for it. Those steps are most of what
// a refusal through the transaction layer costs, and they compete for the
// CPU with the calls already accepted: when the server is saturated, every
// request waits in one run queue, so a flood of new INVITEs delays the
// ACKs and BYEs of accepted calls past their retransmission timers (their
// 200s are resent, BYEs retransmitted, calls fail).
//
// Besides the pending-INVITE limit, two delays are the signals. The SIP
// socket's own queueing delay (readdelay.go): how long datagrams waited
// in the kernel before the read loop took them. And the Go scheduler's
// queueing delay: how long runnable goroutines waited for a CPU, once it
// has lasted 200 ms (runtime/metrics /sched/latencies:seconds; see
// schedLatency); every request is handled by a goroutine, so that delay
// is what an ACK or BYE arriving now will wait. With the pending-INVITE
// limit reached, the socket's delay above OverloadOptions.MaxReadDelay
// while the kernel drops datagrams from the full queue, or the
// scheduler's above OverloadOptions.MaxSchedLatency, a new INVITE gets a
// stateless 503 with Retry-After.
//
// Refusals stay consistent: the verdict on each INVITE (Call-ID and CSeq
// number) is remembered for 16–32 s (the life of an INVITE transaction;
// a map entry of ~20 bytes each, ~4 MB at 6,000 INVITEs a second),
// so a retransmission of an INVITE let through is let through again (its
// transaction answers it) and one refused is refused again with the same
// 503. The ACK of a stateless 503 (To tag starting shedTagPrefix) is
// dropped in the read loop.

// DefaultMaxSchedLatency is OverloadOptions.MaxSchedLatency when unset.
const DefaultMaxSchedLatency = 50 * time.Millisecond

// shedTagPrefix starts the To tag of stateless 503s: their ACKs are
// recognised and dropped before parsing.
const shedTagPrefix = "sbshed"

// shedVerdictWindow is how long a verdict lives at least (twice at
// most): a generation of the verdict map.
const shedVerdictWindow = 16 * time.Second

type shedder struct {
	seed maphash.Seed

	mu      sync.Mutex
	cur     map[uint64]bool // verdicts of this generation: true = let through
	prev    map[uint64]bool
	genFrom time.Time

	latency schedLatency
	acks    atomic.Uint64 // ACKs of stateless 503s dropped
}

func newShedder() *shedder {
	return &shedder{seed: maphash.MakeSeed(), cur: map[uint64]bool{}, prev: map[uint64]bool{}}
}

// key identifies an INVITE and its retransmissions.
func (s *shedder) key(h *rawHead) uint64 {
	var mh maphash.Hash
	mh.SetSeed(s.seed)
	_, _ = mh.Write(h.callID)
	_ = mh.WriteByte(0)
	_, _ = mh.Write(h.cseqNum)
	return mh.Sum64()
}

// verdict returns the remembered verdict for k, or decides with admit and
// remembers it.
func (s *shedder) verdict(k uint64, now time.Time, admit func() bool) (through, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.genFrom) >= shedVerdictWindow {
		s.prev, s.cur, s.genFrom = s.cur, make(map[uint64]bool, len(s.cur)), now
	}
	if v, ok := s.cur[k]; ok {
		return v, true
	}
	if v, ok := s.prev[k]; ok {
		return v, true
	}
	through = admit()
	s.cur[k] = through
	return through, false
}

// earlyShed looks at a request in the read loop (after lint) and reports
// whether it consumed it: a new INVITE refused with a stateless 503, or
// the ACK of such a 503.
func (a *Agent) earlyShed(info sip.TransportReadProps, conn net.PacketConn, data []byte, h *rawHead) bool {
	switch {
	case bytes.Equal(h.method, []byte("ACK")):
		if bytes.HasPrefix(h.toTag, []byte(shedTagPrefix)) {
			a.shed.acks.Add(1)
			return true
		}
		return false
	case !bytes.Equal(h.method, []byte("INVITE")) || h.toTag != nil:
		return false
	}
	now := time.Now()
	key := a.shed.key(h)
	var reason RejectReason
	through, known := a.shed.verdict(key, now, func() bool {
		if a.draining.Load() {
			return true // admitInvite answers "shutting down" statefully
		}
		if limit := a.pendingLimit(now); limit > 0 && a.pendingInvites.Load() >= limit {
			reason = RejectPending
			return false
		}
		if limit := a.maxReadDelay(); limit > 0 && a.readDelay.shedding(now, limit) {
			reason = RejectReadDelay
			return false
		}
		if limit := a.maxSchedLatency(); limit > 0 && a.shed.latency.recent() > limit {
			reason = RejectSchedLatency
			return false
		}
		return true
	})
	if through {
		return false
	}
	a.refused(now)
	if !known {
		a.observer().InviteRejected(reason)
		if ok, held := a.overloadLog.allow(now); ok {
			a.log.Warn("sip: overload, INVITE refused with a stateless 503", "reason", reason.String(), "pending", a.pendingInvites.Load(),
				"read_delay", a.readDelay.recent(now), "sched_latency", a.shed.latency.recent(), "source", addrString(info.RemoteAddr), "suppressed_before", held)
		}
	}
	if res := a.stateless503(data, key); res != nil && info.RemoteAddr != nil {
		if err := a.sendRaw(info, conn, res); err != nil {
			a.log.Debug("sip: stateless 503 not sent", "error", err)
		}
	}
	return true
}

func (a *Agent) maxSchedLatency() time.Duration {
	return overloadLimit(a.cfg.Overload.MaxSchedLatency, DefaultMaxSchedLatency)
}

// overloadLimit reads a duration option of OverloadOptions: negative
// turns the check off (0), zero means def.
func overloadLimit(m, def time.Duration) time.Duration {
	switch {
	case m < 0:
		return 0
	case m == 0:
		return def
	}
	return m
}

// stateless503 builds the 503 (with Retry-After) of a refused INVITE from
// its raw headers: Via, From, Call-ID and CSeq copied, To copied with a
// tag derived from the INVITE's key (the same for its retransmissions).
func (a *Agent) stateless503(data []byte, key uint64) []byte {
	var tag [len(shedTagPrefix) + 13]byte
	out, ok := appendStatelessHead(append(make([]byte, 0, 512), "SIP/2.0 503 Service Unavailable (overload)\r\n"...),
		data, true, strconv.AppendUint(append(tag[:0], shedTagPrefix...), key, 36))
	if !ok {
		return nil
	}
	out = append(out, "Retry-After: "...)
	out = strconv.AppendInt(out, int64(a.retryAfterSecs()), 10)
	out = append(out, "\r\nServer: "...)
	out = append(out, a.cfg.UserAgent...)
	out = append(out, "\r\nContent-Length: 0\r\n\r\n"...)
	return out
}

// plausibleVia reports whether a Via value starts like one:
// SIP/2.0/<transport> <host>.
func plausibleVia(v []byte) bool {
	v = bytes.TrimSpace(v)
	if len(v) < 9 || !bytes.EqualFold(v[:8], []byte("SIP/2.0/")) {
		return false
	}
	proto, rest, ok := bytes.Cut(v[8:], []byte(" "))
	rest = bytes.TrimSpace(rest)
	return ok && isToken(proto) && len(rest) > 0 && rest[0] != ';' && rest[0] != ','
}

// headerTag returns the tag parameter of a From or To header value (nil
// when it has none). Parameters inside <> belong to the URI, not the
// header.
func headerTag(value []byte) []byte {
	params := value
	if i := bytes.LastIndexByte(value, '>'); i >= 0 {
		params = value[i+1:]
	}
	return headerParam(params, "tag")
}

// headerParam returns the value of the first parameter called name
// (case-insensitive) among the ;-separated parameters of v (what comes
// before the first ';' is not one), trimmed; nil when there is none or
// it is empty.
func headerParam(v []byte, name string) []byte {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return nil
		}
		v = v[i+1:]
		p := v
		if j := bytes.IndexByte(p, ';'); j >= 0 {
			p = p[:j]
		}
		n, val, _ := bytes.Cut(p, []byte("="))
		if bytes.EqualFold(bytes.TrimSpace(n), []byte(name)) {
			if val = bytes.TrimSpace(val); len(val) > 0 {
				return val
			}
			return nil
		}
	}
	return nil
}

// schedLatency follows the Go scheduler's queueing delay: every
// schedSampleEvery it reads /sched/latencies:seconds and takes the 90th
// percentile of the delays recorded since the previous read; what it
// reports is the least of the last schedWindows such percentiles, so a
// delay counts only once it has lasted schedWindows × 50 ms. A garbage
// collection cycle at thousands of calls a second holds part of the CPU
// for tens of milliseconds and makes single windows spike while the
// server keeps up; a saturated server's delay stays up.
type schedLatency struct {
	p90  atomic.Int64 // ns; the least of the last schedWindows windows
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const schedLatencyMetric = "/sched/latencies:seconds"

// schedSampleEvery is how often the scheduler latency is read: short
// enough to notice a flood within a few ticks of the retransmission timer
// (T1 = 500 ms), long enough that a window holds thousands of samples at
// load. A read costs a few microseconds.
const schedSampleEvery = 50 * time.Millisecond

// schedWindows is how many consecutive windows the delay must stay up
// (200 ms): at 6,000 calls/s on two cores, single-window shedding
// refused 1.5–5.7 % of calls that the server set up without loss with
// shedding off (docs/BENCHMARKS.md).
const schedWindows = 4

func (l *schedLatency) start() {
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.run()
}

func (l *schedLatency) close() {
	if l.stop == nil {
		return
	}
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// recent is the scheduler's queueing delay over the last window (p90).
func (l *schedLatency) recent() time.Duration { return time.Duration(l.p90.Load()) }

func (l *schedLatency) run() {
	defer close(l.done)
	sample := []metrics.Sample{{Name: schedLatencyMetric}}
	var prev []uint64
	var last [schedWindows]float64
	n := 0
	t := time.NewTicker(schedSampleEvery)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindFloat64Histogram {
			h := sample[0].Value.Float64Histogram()
			if prev != nil && len(prev) == len(h.Counts) {
				// A window without a scheduling event says nothing: it
				// is left out rather than counted as no delay.
				if q := deltaQuantile(prev, h.Counts, h.Buckets, 0.9); q >= 0 {
					last[n%schedWindows] = q
					n++
					l.p90.Store(int64(slices.Min(last[:min(n, schedWindows)]) * 1e9))
				}
			}
			prev = append(prev[:0], h.Counts...)
		}
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
	}
}

// deltaQuantile is the q-quantile of the samples counts has over prev
// (cumulative-since-start histograms with the same buckets: bucket i
// holds [buckets[i], buckets[i+1])), as the upper bound of the bucket it
// falls in (finite: the last finite bound for an open-ended bucket); -1
// when nothing was recorded in between.
func deltaQuantile(prev, counts []uint64, buckets []float64, q float64) float64 {
	var total uint64
	for i := range counts {
		total += counts[i] - prev[i]
	}
	if total == 0 {
		return -1
	}
	want := uint64(q*float64(total) + 0.5)
	want = max(want, 1)
	var seen uint64
	for i := range counts {
		seen += counts[i] - prev[i]
		if seen >= want {
			hi := buckets[i+1]
			if hi > 1e300 { // +Inf: the bucket's lower bound
				hi = buckets[i]
			}
			return hi
		}
	}
	return buckets[len(buckets)-1]
}
