package media

import (
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// DefaultRTCPInterval is the nominal time between an endpoint's RTCP
// reports: RFC 3550's 5 s minimum, which is what a two-party audio session
// gets (its 5 % bandwidth share would allow far more).
const DefaultRTCPInterval = 5 * time.Second

// minRTCPInterval bounds EndpointOptions.RTCPInterval from below.
const minRTCPInterval = 10 * time.Millisecond

// rtcpSession is the RTCP half of an endpoint (RFC 3550 section 6): it
// builds the compound SR or RR + SDES CNAME reports the sender tick sends
// every interval (randomised 0.5–1.5 times), parses what the peer sends,
// keeps the LSR/DLSR bookkeeping, and measures the round-trip time.
//
// It runs once per report, not per RTP packet: building a report costs a
// few allocations inside pion/rtcp (see BenchmarkRTCPBuildReport).
type rtcpSession struct {
	interval time.Duration
	// nextAt is when the next report is due (UnixNano; 0 = not scheduled).
	// Only the sender tick reads and writes it.
	nextAt atomic.Int64

	in, out, dropped atomic.Uint64

	mu sync.Mutex
	// Our NTP clock: the wall clock read once, advanced by the monotonic
	// clock, so a stepped system clock cannot corrupt RTT.
	epoch     time.Time
	epochNTP  uint64
	ssrc      uint32
	sdes      []byte // our SDES CNAME chunk, marshalled once
	buf       []byte
	sent      [8]sentSR // our recent SRs, to match the peer's LSR
	sentNext  int
	pktsAt    [2]uint64 // packets sent at the last two reports: are we a sender?
	prior     receptionState
	peerSR    peerSR
	peer      peerView
	remoteBye bool
}

type sentSR struct {
	mid uint32 // middle 32 bits of its NTP timestamp
	at  time.Time
}

// peerSR is the peer's last sender report, for LSR and DLSR.
type peerSR struct {
	ok   bool
	ssrc uint32
	mid  uint32
	at   time.Time
}

// peerView is what the peer's report blocks say about our stream.
type peerView struct {
	reports      uint64
	fractionLost uint8
	totalLost    uint32
	jitterTS     uint32
	sentAtReport uint64 // our packet count when the report arrived
	rtt          time.Duration
	rttSamples   uint64
}

// reportInput is our side of a report: sender information.
type reportInput struct {
	rtpTS      uint32 // RTP timestamp of the instant the report is built
	packets    uint64
	octets     uint64
	recv       receptionState
	recvOK     bool
	withReport bool // include a report block for recv
}

func (s *rtcpSession) init(interval time.Duration, ssrc uint32) {
	switch {
	case interval == 0:
		interval = DefaultRTCPInterval
	case interval > 0 && interval < minRTCPInterval:
		interval = minRTCPInterval
	}
	s.interval = interval
	s.ssrc = ssrc
	s.epoch = time.Now()
	s.epochNTP = ntpTime(s.epoch)
	// RFC 7022: a random CNAME per session (96 bits, base64).
	var b [12]byte
	_, _ = crand.Read(b[:])
	sdes := rtcp.NewCNAMESourceDescription(ssrc, base64.RawURLEncoding.EncodeToString(b[:]))
	s.sdes, _ = sdes.Marshal()
}

// ntpTime converts t to a 64-bit NTP timestamp (seconds since 1900 in the
// high word, fraction in the low word).
func ntpTime(t time.Time) uint64 {
	ns := uint64(t.UnixNano()) + 2208988800*uint64(time.Second)
	sec := ns / uint64(time.Second)
	frac := (ns % uint64(time.Second)) << 32 / uint64(time.Second)
	return sec<<32 | frac
}

// ntpNow returns our session NTP time at now.
func (s *rtcpSession) ntpNow(now time.Time) uint64 {
	d := now.Sub(s.epoch)
	if d < 0 {
		d = 0
	}
	return s.epochNTP + uint64(d/time.Second)<<32 + uint64(d%time.Second)<<32/uint64(time.Second)
}

// toNTP16 expresses d in 1/65536 s (the unit of DLSR and of the middle 32
// bits of NTP time), saturating.
func toNTP16(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	v := uint64(d/time.Second)<<16 + uint64(d%time.Second)<<16/uint64(time.Second)
	if v > 0xffffffff {
		return 0xffffffff
	}
	return uint32(v)
}

// nextRTCPInterval randomises the nominal interval to u∈[0,1) mapped onto
// [0.5, 1.5) times it (RFC 3550 section 6.3.1), so the reports of many
// endpoints started together do not stay synchronised.
func nextRTCPInterval(nominal time.Duration, u float64) time.Duration {
	if u < 0 || u >= 1 {
		u = 0.5
	}
	return time.Duration(float64(nominal) * (0.5 + u))
}

// build marshals a compound report into s.buf: an SR when we sent RTP
// since the report before last (RFC 3550 section 6.4), else an RR, with one
// report block for the stream we receive, then our SDES CNAME, then a BYE
// if bye is set. Called with s.mu held.
func (s *rtcpSession) build(now time.Time, in reportInput, bye bool) ([]byte, error) {
	sender := in.packets > s.pktsAt[0]
	s.pktsAt[0], s.pktsAt[1] = s.pktsAt[1], in.packets

	var blocks []rtcp.ReceptionReport
	if in.recvOK && in.withReport {
		var block [1]rtcp.ReceptionReport
		block[0] = s.receptionBlock(now, in.recv)
		blocks = block[:]
	}
	var head []byte
	var err error
	if sender {
		ntp := s.ntpNow(now)
		sr := rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntp, RTPTime: in.rtpTS,
			PacketCount: uint32(in.packets), OctetCount: uint32(in.octets), Reports: blocks}
		head, err = sr.Marshal()
		s.sent[s.sentNext] = sentSR{mid: uint32(ntp >> 16), at: now}
		s.sentNext = (s.sentNext + 1) % len(s.sent)
	} else {
		rr := rtcp.ReceiverReport{SSRC: s.ssrc, Reports: blocks}
		head, err = rr.Marshal()
	}
	if err != nil {
		return nil, err
	}
	s.buf = append(append(s.buf[:0], head...), s.sdes...)
	if bye {
		g := rtcp.Goodbye{Sources: []uint32{s.ssrc}}
		b, err := g.Marshal()
		if err != nil {
			return nil, err
		}
		s.buf = append(s.buf, b...)
	}
	return s.buf, nil
}

// receptionBlock fills a report block for r (RFC 3550 appendix A.3 for the
// fraction lost over the interval since the last report).
func (s *rtcpSession) receptionBlock(now time.Time, r receptionState) rtcp.ReceptionReport {
	p := s.prior
	if p.ssrc != r.ssrc || r.expected < p.expected || r.received < p.received {
		p = receptionState{ssrc: r.ssrc} // new source, or its statistics restarted
	}
	s.prior = r
	var frac uint8
	if expInt, recInt := r.expected-p.expected, r.received-p.received; expInt > recInt {
		frac = uint8((expInt - recInt) << 8 / expInt)
	}
	var lost uint64
	if r.expected > r.received {
		lost = min(r.expected-r.received, 0x7fffff)
	}
	b := rtcp.ReceptionReport{SSRC: r.ssrc, FractionLost: frac, TotalLost: uint32(lost),
		LastSequenceNumber: r.extHighest, Jitter: r.jitterTS}
	if sr := s.peerSR; sr.ok && sr.ssrc == r.ssrc {
		b.LastSenderReport = sr.mid
		b.Delay = toNTP16(now.Sub(sr.at))
	}
	return b
}

var errRTCPEmpty = errors.New("media: empty RTCP datagram")

// receive parses one RTCP datagram and applies what concerns us: the
// peer's SR (for our LSR/DLSR), report blocks about ourSSRC (loss, jitter,
// RTT), BYE. Any malformed part rejects the whole datagram. packets is our
// RTP packet count now. Called with s.mu held.
func (s *rtcpSession) receive(pkt []byte, now time.Time, packets uint64) error {
	pkts, err := rtcp.Unmarshal(pkt)
	if err != nil {
		return err
	}
	if len(pkts) == 0 {
		return errRTCPEmpty
	}
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.SenderReport:
			s.peerSR = peerSR{ok: true, ssrc: p.SSRC, mid: uint32(p.NTPTime >> 16), at: now}
			s.reportBlocks(p.Reports, now, packets)
		case *rtcp.ReceiverReport:
			s.reportBlocks(p.Reports, now, packets)
		case *rtcp.Goodbye:
			s.remoteBye = true
		}
	}
	return nil
}

// maxRTT rejects round trips no real path has (a peer's bogus DLSR).
const maxRTT = 30 * time.Second

func (s *rtcpSession) reportBlocks(blocks []rtcp.ReceptionReport, now time.Time, packets uint64) {
	for _, b := range blocks {
		if b.SSRC != s.ssrc {
			continue
		}
		v := &s.peer
		v.reports++
		v.fractionLost = b.FractionLost
		v.totalLost = b.TotalLost & 0xffffff
		if v.totalLost&0x800000 != 0 { // negative: duplicates outnumber losses
			v.totalLost = 0
		}
		v.jitterTS = b.Jitter
		v.sentAtReport = packets
		if b.LastSenderReport == 0 {
			continue
		}
		// RFC 3550 section 6.4.1: RTT = A − LSR − DLSR in 1/65536 s, A
		// our NTP time now. Only an LSR that is one of our recent SRs
		// counts, so garbage never becomes an RTT.
		for _, sr := range s.sent {
			if sr.at.IsZero() || sr.mid != b.LastSenderReport {
				continue
			}
			a := uint32(s.ntpNow(now) >> 16)
			rtt := int32(a - b.LastSenderReport - b.Delay)
			switch {
			case rtt < 0 && rtt > -66: // within 1 ms: rounding of DLSR on a fast path
				rtt = 0
			case rtt < 0:
				continue
			}
			d := time.Duration(int64(rtt) * int64(time.Second) >> 16)
			if d <= maxRTT {
				v.rtt = d
				v.rttSamples++
			}
			break
		}
	}
}

// rtcpTick sends a report when one is due. The sender tick calls it every
// 20 ms with the tick's clock reading; when nothing is due it costs an atomic load.
func (e *Endpoint) rtcpTick(cfg *StreamConfig, now time.Time) {
	r := &e.rtcp
	if r.interval < 0 {
		return
	}
	next := r.nextAt.Load()
	if next == 0 {
		// RFC 3550 section 6.2: the first report comes after half the
		// minimum interval.
		r.nextAt.Store(now.Add(nextRTCPInterval(r.interval/2, rand.Float64())).UnixNano())
		return
	}
	if now.UnixNano() < next {
		return
	}
	r.nextAt.Store(now.Add(nextRTCPInterval(r.interval, rand.Float64())).UnixNano())
	e.sendRTCP(now, cfg, false)
}

// sendRTCP builds one compound report (with BYE if bye) and hands it to
// the transport, which knows where RTCP goes (and protects it as SRTCP).
func (e *Endpoint) sendRTCP(now time.Time, cfg *StreamConfig, bye bool) {
	r := &e.rtcp
	if cfg == nil || !e.t.Verified() {
		return
	}
	in := reportInput{rtpTS: e.out.clockAt(now), packets: e.packetsOut.Load()}
	if b := e.bytesOut.Load(); b > 12*in.packets { // every header we send is 12 bytes
		in.octets = b - 12*in.packets
	}
	in.recv, in.recvOK = e.rstats.reception()
	in.withReport = in.recvOK && e.packetsIn.Load() > 0
	r.mu.Lock()
	defer r.mu.Unlock()
	pkt, err := r.build(now, in, bye)
	if err != nil {
		e.log.Debug("media: RTCP report not built", "error", err)
		return
	}
	if e.t.WriteRTCP(pkt) == nil {
		r.out.Add(1)
	}
}

// receiveRTCP applies a compound RTCP packet the transport accepted from
// the peer; malformed ones are counted in RTCPDropped, the first one
// logged at debug level. It reports whether the packet was applied.
func (e *Endpoint) receiveRTCP(pkt []byte) bool {
	r := &e.rtcp
	r.mu.Lock()
	err := r.receive(pkt, time.Now(), e.packetsOut.Load())
	r.mu.Unlock()
	if err != nil {
		if r.dropped.Add(1) == 1 {
			e.log.Debug("media: RTCP packet dropped", "error", err)
		}
		return false
	}
	r.in.Add(1)
	return true
}

// rtcpStats adds the RTCP counters, the peer's view and the MOS estimates
// to st (whose RTP receive statistics are already filled in).
func (e *Endpoint) rtcpStats(st *EndpointStats) {
	r := &e.rtcp
	st.RTCPIn, st.RTCPOut, st.RTCPDropped = r.in.Load(), r.out.Load(), r.dropped.Load()
	r.mu.Lock()
	v, bye := r.peer, r.remoteBye
	r.mu.Unlock()
	cfg := e.Config()
	st.RemoteBye = bye
	st.RemoteReports = v.reports
	st.RTT, st.RTTSamples = v.rtt, v.rttSamples
	st.RemoteLost = uint64(v.totalLost)
	st.RemoteFractionLost = float64(v.fractionLost) / 256
	if cfg.Codec.ClockRate > 0 {
		st.RemoteJitter = time.Duration(v.jitterTS) * time.Second / time.Duration(cfg.Codec.ClockRate)
	}
	ie, bpl := dsp.CodecImpairment(cfg.Codec.Name)
	if st.Expected > 0 {
		delay := mouthToEar(st.RTT, st.Jitter)
		if js := e.JitterStats(); js.Played > 0 {
			// Our own buffer runs: rate the delay it really adds.
			delay = st.RTT/2 + FrameDurationMs*time.Millisecond + js.Delay
		}
		st.MOS = dsp.EModel{Delay: delay, LossPercent: 100 * float64(st.Lost) / float64(st.Expected), Ie: ie, Bpl: bpl}.MOS()
	}
	if v.reports > 0 {
		var loss float64
		if sent := max(v.sentAtReport, st.RemoteLost); sent > 0 {
			loss = 100 * float64(st.RemoteLost) / float64(sent)
		}
		st.RemoteMOS = dsp.EModel{Delay: mouthToEar(st.RTT, st.RemoteJitter), LossPercent: loss, Ie: ie, Bpl: bpl}.MOS()
	}
}

// mouthToEar estimates the one-way delay the E-model rates: half the
// round trip, a 20 ms packet, and a jitter buffer twice the measured
// jitter deep (what an adaptive buffer settles at). It stands in for the
// peer's buffer, and for ours when no audio is decoded here (passthrough).
func mouthToEar(rtt, jitter time.Duration) time.Duration {
	return rtt/2 + FrameDurationMs*time.Millisecond + 2*jitter
}
