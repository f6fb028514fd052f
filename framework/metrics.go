package framework

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchboard-voice/switchboard/sip"
)

// serverMetrics are the Prometheus metrics of one Server, registered on
// its own registry (no global state). Per-call values are observed once,
// when the call ends, from its CDR: nothing is counted per RTP packet.
// docs/operations.md lists every metric with example queries.
type serverMetrics struct {
	reg *prometheus.Registry

	callsStarted *prometheus.CounterVec // direction
	callsEnded   *prometheus.CounterVec // cause, answered
	setup        prometheus.Histogram
	rejected     [sip.NumRejectReasons]prometheus.Counter
	sipRequests  *prometheus.CounterVec // direction, method
	sipResponses *prometheus.CounterVec // direction, method, class
	reqCache     [2][sip.NumMethods]atomic.Pointer[prometheus.Counter]
	resCache     [2][sip.NumMethods][7]atomic.Pointer[prometheus.Counter]
	rtpPackets   [2]prometheus.Counter // in, out
	rtpLost      prometheus.Counter
	jitter       prometheus.Histogram
	loss         prometheus.Histogram
	mos          prometheus.Histogram
	callsStartIn prometheus.Counter
	callsStartOu prometheus.Counter
}

var responseClasses = [7]string{"", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}

func newServerMetrics(s *Server) *serverMetrics {
	reg := prometheus.NewRegistry()
	m := &serverMetrics{reg: reg}
	m.callsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_calls_started_total",
		Help: "Calls started: inbound INVITEs that became calls, and outbound calls (Originate) once answered.",
	}, []string{"direction"})
	m.callsStartIn = m.callsStarted.WithLabelValues("inbound")
	m.callsStartOu = m.callsStarted.WithLabelValues("outbound")
	m.callsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_calls_total",
		Help: "Calls ended, by end cause and whether the caller was answered.",
	}, []string{"cause", "answered"})
	m.setup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_call_setup_seconds",
		Help:    "Inbound call setup latency: INVITE received to its 2xx sent and ACKed.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_invites_rejected_total",
		Help: "Initial INVITEs refused before they became calls (503), by reason: overload limits, no RTP port, shutting down.",
	}, []string{"reason"})
	for r := range sip.NumRejectReasons {
		m.rejected[r] = rejected.WithLabelValues(r.String())
	}
	m.sipRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_sip_requests_total",
		Help: "SIP requests received (in) and sent (out), by method; retransmissions included.",
	}, []string{"direction", "method"})
	m.sipResponses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_sip_responses_total",
		Help: "SIP responses received (in) and sent (out), by CSeq method and status class; retransmissions included.",
	}, []string{"direction", "method", "class"})
	rtp := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_rtp_packets_total",
		Help: "RTP packets of ended calls' first legs, received (in) and sent (out); added when the call ends.",
	}, []string{"direction"})
	m.rtpPackets[0], m.rtpPackets[1] = rtp.WithLabelValues("in"), rtp.WithLabelValues("out")
	m.rtpLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_rtp_packets_lost_total",
		Help: "RTP packets lost (RFC 3550 cumulative loss) on ended calls' first legs; added when the call ends.",
	})
	m.jitter = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_call_jitter_seconds",
		Help:    "Interarrival jitter (RFC 3550) of each ended call's received RTP.",
		Buckets: []float64{.001, .002, .005, .01, .02, .03, .05, .1, .2},
	})
	m.loss = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_call_loss_ratio",
		Help:    "Fraction of each ended call's expected RTP packets that were lost (calls that received RTP).",
		Buckets: []float64{0, .001, .005, .01, .02, .05, .1, .2, .5},
	})
	m.mos = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_call_mos",
		Help:    "E-model MOS estimate of what each ended call's caller leg heard (calls with an estimate).",
		Buckets: []float64{1, 2, 2.5, 3, 3.5, 3.8, 4, 4.2, 4.4},
	})
	// The closures read s.ports and s.agent at scrape time: the metrics
	// exist before the agent (which reports to them).
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.callsStarted, m.callsEnded, m.setup, rejected, m.sipRequests, m.sipResponses,
		rtp, m.rtpLost, m.jitter, m.loss, m.mos,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_calls_active",
			Help: "Calls up now (each has one call actor).",
		}, func() float64 { return float64(s.ActiveCalls()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_sip_invites_pending",
			Help: "Inbound INVITE transactions in progress (received, not yet finished and ACKed): calls being set up.",
		}, func() float64 { return float64(s.agent.PendingInvites()) }),
		readLoopCounter("INVITE", func() int64 { n, _, _ := s.agent.ReadLoopRequests(); return n }),
		readLoopCounter("ACK", func() int64 { _, n, _ := s.agent.ReadLoopRequests(); return n }),
		readLoopCounter("BYE", func() int64 { _, _, n := s.agent.ReadLoopRequests(); return n }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_sched_latency_seconds",
			Help: "Go scheduler queueing delay that has lasted 200 ms (the least of the last four 50 ms windows' 90th percentile of how long runnable goroutines waited for a CPU); above --max-sched-latency new INVITEs get a stateless 503.",
		}, func() float64 { return s.agent.SchedLatency().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_sip_read_delay_seconds",
			Help: "How long SIP datagrams waited in the UDP socket's receive queue before the read loop took them (the least of those read in the last 50 ms window; kernel receive timestamps, Linux); above --max-read-delay, while the kernel drops datagrams from the full queue, new INVITEs get a stateless 503.",
		}, func() float64 { return s.agent.ReadDelay().Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_sip_read_drops_total",
			Help: "SIP datagrams the kernel dropped because the UDP socket's receive queue was full (SO_RXQ_OVFL, Linux): requests and responses lost before the server saw them.",
		}, func() float64 { return float64(s.agent.ReadDrops()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_actor_mailbox_messages",
			Help: "Messages queued in the call actors' mailboxes, summed over calls.",
		}, func() float64 { return float64(s.mailboxDepth()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_rtp_ports_in_use",
			Help: "RTP port pairs held by calls or resting after release.",
		}, func() float64 { return float64(s.ports.InUse()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_rtp_ports",
			Help: "RTP port pairs in the pool.",
		}, func() float64 { return float64(s.ports.Size()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_pacer_ticks_total",
			Help: "20 ms media ticks run by the pacer's shards.",
		}, func() float64 { return float64(s.agent.Pacer().Ticks()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchboard_pacer_overruns_total",
			Help: "Pacer shard ticks that took longer than 20 ms (audio of that shard's calls went out late).",
		}, func() float64 { return float64(s.agent.Pacer().Overruns()) }),
	)
	return m
}

// readLoopCounter is switchboard_sip_read_loop_requests_total for one
// method (sip.Agent.ReadLoopRequests), read at scrape time.
func readLoopCounter(method string, n func() int64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "switchboard_sip_read_loop_requests_total",
		Help:        "Requests over UDP taken in the read loop, past sipgo's transaction layer: initial INVITEs (our INVITE server transaction), the ACK of our 2xx to an INVITE, the BYE of an answered inbound call.",
		ConstLabels: prometheus.Labels{"method": method},
	}, func() float64 { return float64(n()) })
}

// Message implements sip.Observer: one counter increment per SIP message,
// through a cache of label children (no allocation once warm).
func (m *serverMetrics) Message(dir sip.MessageDirection, method sip.Method, status int) {
	d := 0
	if dir == sip.MessageOut {
		d = 1
	}
	if method >= sip.NumMethods {
		method = sip.MethodOther
	}
	if status == 0 {
		slot := &m.reqCache[d][method]
		c := slot.Load()
		if c == nil {
			cc := m.sipRequests.WithLabelValues(dir.String(), method.String())
			slot.Store(&cc)
			c = &cc
		}
		(*c).Inc()
		return
	}
	class := status / 100
	if class < 1 || class > 6 {
		return
	}
	slot := &m.resCache[d][method][class]
	c := slot.Load()
	if c == nil {
		cc := m.sipResponses.WithLabelValues(dir.String(), method.String(), responseClasses[class])
		slot.Store(&cc)
		c = &cc
	}
	(*c).Inc()
}

// InviteRejected implements sip.Observer.
func (m *serverMetrics) InviteRejected(r sip.RejectReason) {
	if r < sip.NumRejectReasons {
		m.rejected[r].Inc()
	}
}

// CallAnswered implements sip.Observer.
func (m *serverMetrics) CallAnswered(setup time.Duration) { m.setup.Observe(setup.Seconds()) }

// callStarted counts a call the server started.
func (m *serverMetrics) callStarted(inbound bool) {
	if inbound {
		m.callsStartIn.Inc()
	} else {
		m.callsStartOu.Inc()
	}
}

// observeCDR records an ended call: end cause, and the media statistics
// of its first leg. It runs once per call, from the call actor.
func (m *serverMetrics) observeCDR(cdr CDR) {
	answered := "false"
	if !cdr.Answer.IsZero() {
		answered = "true"
	}
	m.callsEnded.WithLabelValues(causeLabel(cdr.Cause), answered).Inc()
	md := cdr.Media
	m.rtpPackets[0].Add(float64(md.PacketsIn))
	m.rtpPackets[1].Add(float64(md.PacketsOut))
	m.rtpLost.Add(float64(md.Lost))
	if md.PacketsIn > 0 {
		m.jitter.Observe(md.Jitter.Seconds())
		m.loss.Observe(float64(md.Lost) / float64(md.PacketsIn+md.Lost))
	}
	if md.MOS > 0 {
		m.mos.Observe(md.MOS)
	}
}

// causeLabel maps a CDR cause to a bounded label value: the causes the
// framework writes, "rejected_NNN" for a flow's rejection, "other" for
// anything else (error texts would make a label per error).
func causeLabel(cause string) string {
	switch cause {
	case "remote hangup":
		return "remote_hangup"
	case "canceled":
		return "canceled"
	case "media timeout":
		return "media_timeout"
	case "session expired":
		return "session_expired"
	case "local hangup":
		return "local_hangup"
	case "hangup":
		return "hangup"
	case "no ack":
		return "no_ack"
	}
	if code, ok := strings.CutPrefix(cause, "rejected "); ok {
		if len(code) == 3 && code[0] >= '3' && code[0] <= '6' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9' {
			return "rejected_" + code
		}
		return "rejected"
	}
	return "other"
}
