package framework

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchboard-voice/switchboard/bridge"
)

// newMux builds the server's HTTP routes. Server.Handle adds to it, before
// or after the server starts.
func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg}))
	mux.Handle("GET /sip", s.agent.WebSocketHandler())
	mux.HandleFunc("GET /tls/cert.pem", func(w http.ResponseWriter, r *http.Request) {
		pemBytes := s.agent.TLSCertificatePEM()
		if pemBytes == nil {
			http.Error(w, "SIP over TLS is not enabled", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", `attachment; filename="switchboard-cert.pem"`)
		_, _ = w.Write(pemBytes)
	})
	if s.browsers != nil {
		mux.Handle("GET /ws", s.browsers.Handler())
	}
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	switch {
	case s.cfg.HTTPHandler != nil:
		mux.Handle("/", s.cfg.HTTPHandler)
		mux.Handle("GET /status", s.statusPage())
	case s.browsers != nil:
		mux.Handle("GET /", bridge.Page()) // the softphone
		mux.Handle("GET /status", s.statusPage())
	default:
		mux.Handle("GET /{$}", s.statusPage())
	}
	return mux
}

// Handle registers h for pattern (http.ServeMux syntax, e.g.
// "GET /calls/{id}") on the server's HTTP port, beside the built-in
// routes: / (status page, or the softphone with Config.Browsers and
// /status), /sip, /ws, /tls/cert.pem, /metrics, /healthz, /readyz and,
// when enabled, /debug/pprof/. Like http.ServeMux.Handle it panics if the
// pattern is invalid or conflicts with one already registered. It may be
// called before or after ListenAndServe.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc registers f for pattern, as Handle does.
func (s *Server) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, f)
}

// Registry returns the Prometheus registry behind /metrics, for an
// application's own metrics. It holds only this server's metrics and the
// Go runtime and process collectors.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// readiness reports whether the server should get new calls: it listens, is
// not shutting down and has free RTP ports. /readyz answers 200 or 503
// with the reason.
func (s *Server) readiness() (ok bool, reason string) {
	select {
	case <-s.ready:
	default:
		return false, "not listening yet"
	}
	if s.shuttingDown.Load() {
		return false, "shutting down"
	}
	if s.ports.InUse() >= s.ports.Size() {
		return false, "no free RTP ports"
	}
	return true, "ready"
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ok, reason := s.readiness()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, reason)
}

// mailboxDepth sums the messages waiting in the call actors' mailboxes
// (one atomic load per call, at scrape time).
func (s *Server) mailboxDepth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, mb := range s.boxes {
		n += mb.UserMessageCount()
	}
	return n
}

// applyMemorySettings applies Config.MemoryLimit and GCPercent.
// trimMemory returns memory to the operating system after load: every
// trimEvery it compares the calls up with their peak since the last trim,
// and once they have fallen to half of a peak of at least trimMinPeak it
// runs debug.FreeOSMemory (one forced collection, a few milliseconds of
// CPU on a small heap). Without it a server that goes quiet after a burst
// keeps its peak RSS for minutes: the collector only runs when the heap
// grows (or every 2 min), and the scavenger only gives back what the
// last collection freed. It returns when ctx ends.
func (s *Server) trimMemory(ctx context.Context) {
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	var m memTrimmer
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := s.ActiveCalls()
		if peak, trim := m.observe(n); trim {
			start := time.Now()
			debug.FreeOSMemory()
			s.log.Debug("memory returned to the OS after load", "calls_peak", peak, "calls", n, "took", time.Since(start))
		}
	}
}

// memTrimmer decides when trimMemory trims: it keeps the peak of the
// calls up since the last trim. A trim is followed by one more
// trimAgain observations later if the calls have not grown since: some
// of what ended calls leave is freed only later (kept RTP sockets after
// their rest and idle time, ~12 s; the SIP agent's memory of finished
// transactions, answering retransmissions, after 32–40 s).
type memTrimmer struct {
	peak  int
	again int // observations until the follow-up trim; 0: none due
	level int // calls up at the last trim
}

// observe takes the calls up now; it reports the peak and whether to trim.
func (m *memTrimmer) observe(n int) (peak int, trim bool) {
	m.peak = max(m.peak, n)
	peak = m.peak
	if m.peak >= trimMinPeak && n <= m.peak/2 {
		m.peak, m.level, m.again = n, n, trimAgain
		return peak, true
	}
	if m.again > 0 {
		m.again--
		if m.again == 0 && n <= m.level {
			return peak, true
		}
	}
	return peak, false
}

// trimEvery and trimMinPeak pace trimMemory.
const (
	trimEvery   = 5 * time.Second
	trimMinPeak = 64
	trimAgain   = 8 // 40 s
)

func (s *Server) applyMemorySettings() {
	if s.cfg.MemoryLimit > 0 {
		prev := debug.SetMemoryLimit(s.cfg.MemoryLimit)
		s.log.Info("memory limit set", "bytes", s.cfg.MemoryLimit, "previous", prev)
	}
	if s.cfg.GCPercent != 0 {
		prev := debug.SetGCPercent(s.cfg.GCPercent)
		s.log.Info("GC percent set", "gogc", s.cfg.GCPercent, "previous", prev)
	}
}
