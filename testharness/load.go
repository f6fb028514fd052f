package testharness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/sip"
)

// LoadOptions configure a simulation run.
type LoadOptions struct {
	// SIPAddr and RTP ports of the simulated callers' user agent
	// (defaults "127.0.0.1:0" and 40000-40999).
	SIPAddr                string
	RTPPortMin, RTPPortMax int
	// Progress, if set, is called about once a second with the run so far.
	Progress func(Snapshot)
	Logger   *slog.Logger
	// ServerPID, if set, is a process on this host whose CPU and memory
	// are sampled every second during the run (the server under test).
	ServerPID int
	// FailFast stops the run when this many calls in a row fail without
	// any call answered (0: 3), so a dead target ends it quickly.
	FailFast int
	// BrowserToken is the token browser callers log in with; Tokens, if
	// set instead, mints one per caller (user "loadN", valid an hour)
	// with the server's key.
	BrowserToken string
	Tokens       *bridge.Tokens
}

// Snapshot is the state of a run, as the progress line shows it.
type Snapshot struct {
	Elapsed                     time.Duration
	Attempted, Answered, Failed int
	Active                      int
	ChecksPassed, ChecksFailed  int
}

// Transport is what carries a simulated caller's call.
type Transport uint8

const (
	// TransportSIP is a virtual SIP phone: INVITE, RTP over UDP.
	TransportSIP Transport = iota
	// TransportWebRTC is a virtual browser: the server's /ws, then ICE,
	// DTLS-SRTP and RTP on a pion peer connection.
	TransportWebRTC
)

func (t Transport) String() string {
	switch t {
	case TransportSIP:
		return "sip"
	case TransportWebRTC:
		return "webrtc"
	}
	return fmt.Sprintf("Transport(%d)", uint8(t))
}

// MarshalText writes the transport's name (JSON reports).
func (t Transport) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// CallResult is what one simulated caller did and heard.
type CallResult struct {
	ID        int       `json:"id"`
	Transport Transport `json:"transport"`
	Start     time.Time `json:"start"`
	Answered  bool      `json:"answered"`
	// Login is, for a browser, the time to open its WebSocket and log in
	// (hello → welcome); the call is placed after it.
	Login time.Duration `json:"login_ns,omitempty"`
	// Setup is the time from sending INVITE (a browser: the "call"
	// message) to the answer (200 OK; the "answer" message).
	Setup time.Duration `json:"setup_ns"`
	// FirstAudio is the time from sending INVITE (the "call" message) to
	// the first RTP packet received — for a browser it includes ICE and
	// DTLS. Zero when none came.
	FirstAudio time.Duration `json:"first_audio_ns,omitempty"`
	// Failure is why the call did not complete its script, "" if it did.
	Failure  string        `json:"failure,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	// Checks are the expect steps, in order: name and whether it was heard.
	Checks []Check `json:"checks,omitempty"`
	// LossPercent and Jitter are what the caller measured on the RTP it
	// received; MOS is the E-model estimate from them (0: no RTP).
	LossPercent float64       `json:"loss_percent"`
	Jitter      time.Duration `json:"jitter_ns"`
	MOS         float64       `json:"mos"`
}

// Check is one expect step's outcome.
type Check struct {
	Name  string        `json:"name"`
	Heard bool          `json:"heard"`
	After time.Duration `json:"after_ns"` // from the step's start
}

// ErrTargetDead means the run stopped because the target never answered.
var ErrTargetDead = errors.New("target does not answer")

// Run simulates sc's callers against its target until sc.Duration has
// passed (or ctx ends) and every call has finished, and returns one
// result per call. It fails early with ErrTargetDead when the first calls
// all fail at the transport (nothing listening, no response).
func Run(ctx context.Context, sc *Scenario, opts LoadOptions) (*Report, error) {
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("testharness: load: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.FailFast == 0 {
		opts.FailFast = 3
	}
	if opts.RTPPortMin == 0 {
		opts.RTPPortMin, opts.RTPPortMax = 40000, 40999
	}
	if sc.Browsers.Share > 0 && opts.BrowserToken == "" && opts.Tokens == nil {
		return nil, errors.New("testharness: load: browser callers need a token (LoadOptions.BrowserToken or Tokens)")
	}
	var phone *Phone
	var err error
	for try := 0; try < 5 && sc.Browsers.Share < 1; try++ {
		// With port 0 the agent binds UDP first and TCP on the same
		// number, which another process may hold: pick again.
		phone, err = NewPhone(PhoneOptions{Addr: opts.SIPAddr, RTPPortMin: opts.RTPPortMin, RTPPortMax: opts.RTPPortMax, Logger: opts.Logger})
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || !strings.HasSuffix(opts.SIPAddr, ":0") && opts.SIPAddr != "" {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("testharness: load: caller agent: %w", err)
	}
	if phone != nil {
		defer phone.Close()
	}
	var sampler *procSampler
	if opts.ServerPID != 0 {
		if sampler, err = startProcSampler(opts.ServerPID); err != nil {
			return nil, fmt.Errorf("testharness: load: %w", err)
		}
	}

	r := &runner{sc: sc, phone: phone, log: opts.Logger, start: time.Now(),
		rng: rand.New(rand.NewPCG(sc.Seed, 0x6c6f6164))}
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r.stop = stop
	r.failFast = opts.FailFast
	r.browserToken, r.tokens = opts.BrowserToken, opts.Tokens

	progressDone := make(chan struct{})
	var pwg sync.WaitGroup
	if opts.Progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
					opts.Progress(r.snapshot())
				}
			}
		}()
	}
	r.arrivals(runCtx)
	r.wg.Wait()
	close(progressDone)
	pwg.Wait()
	rep := newReport(sc, r.start, r.results)
	if sampler != nil {
		sampler.finish(rep)
	}
	if cause := context.Cause(runCtx); errors.Is(cause, ErrTargetDead) {
		return rep, cause
	}
	return rep, nil
}

type runner struct {
	sc       *Scenario
	phone    *Phone
	log      *slog.Logger
	start    time.Time
	rng      *rand.Rand // arrivals and holds; used by arrivals only
	stop     context.CancelCauseFunc
	failFast int

	browserToken string
	tokens       *bridge.Tokens

	wg       sync.WaitGroup
	active   atomic.Int64
	answered atomic.Int64 // calls answered so far (for progress)
	mu       sync.Mutex
	results  []CallResult
	streak   int // failures in a row before any answer
	anyOK    bool
	slots    chan struct{} // ArrivalConcurrent: a token per call to keep up
}

func (r *runner) snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Elapsed: time.Since(r.start), Active: int(r.active.Load()), Answered: int(r.answered.Load())}
	for _, c := range r.results {
		s.Attempted++
		if c.Failure != "" {
			s.Failed++
		}
		for _, ch := range c.Checks {
			if ch.Heard {
				s.ChecksPassed++
			} else {
				s.ChecksFailed++
			}
		}
	}
	s.Attempted += s.Active
	return s
}

func (r *runner) arrivals(ctx context.Context) {
	end := r.start.Add(r.sc.Duration)
	id := 0
	if r.sc.Arrival == ArrivalConcurrent {
		n := r.sc.Concurrent
		r.slots = make(chan struct{}, n)
		for i := 0; i < n; i++ {
			// Spread the first calls over the ramp.
			var at time.Time
			if r.sc.Ramp > 0 {
				at = r.start.Add(time.Duration(int64(r.sc.Ramp) * int64(i) / int64(n)))
			}
			if !sleepUntil(ctx, at) || time.Now().After(end) {
				return
			}
			id++
			r.launch(ctx, id, r.holdTime())
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(end)):
				return
			case <-r.slots:
				id++
				r.launch(ctx, id, r.holdTime())
			}
		}
	}
	// Calls evenly spaced follow the expected count N(t) = ∫rate; a
	// Poisson process with a ramp is thinned from one at the full rate.
	ramp := r.sc.Ramp.Seconds()
	var t float64 // seconds since start of the next arrival
	for k := 1; ; k++ {
		if r.sc.Arrival == ArrivalPoisson {
			for {
				t += r.rng.ExpFloat64() / r.sc.Rate
				if ramp == 0 || t >= ramp || r.rng.Float64() < t/ramp {
					break
				}
			}
		} else if head := r.sc.Rate * ramp / 2; float64(k) <= head {
			t = math.Sqrt(2 * float64(k) * ramp / r.sc.Rate)
		} else {
			t = ramp + (float64(k)-head)/r.sc.Rate
		}
		next := r.start.Add(time.Duration(t * float64(time.Second)))
		if next.After(end) || !sleepUntil(ctx, next) {
			return
		}
		id++
		if r.sc.MaxCalls > 0 && int(r.active.Load()) >= r.sc.MaxCalls {
			r.record(CallResult{ID: id, Start: time.Now(), Failure: "max-calls"})
			continue
		}
		r.launch(ctx, id, r.holdTime())
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func (r *runner) holdTime() time.Duration {
	h := r.sc.Hold
	switch {
	case h.Mean > 0:
		return time.Duration(r.rng.ExpFloat64() * float64(h.Mean))
	case h.Max > h.Min:
		return h.Min + time.Duration(r.rng.Int64N(int64(h.Max-h.Min)))
	case h.Min > 0:
		return h.Min
	}
	return 10 * time.Second
}

func (r *runner) launch(ctx context.Context, id int, hold time.Duration) {
	r.wg.Add(1)
	r.active.Add(1)
	go func() {
		defer r.wg.Done()
		res := r.call(ctx, id, hold)
		r.active.Add(-1)
		r.record(res)
		if r.slots != nil {
			select {
			case r.slots <- struct{}{}:
			default:
			}
		}
	}()
}

func (r *runner) record(res CallResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, res)
	if res.Answered {
		r.anyOK = true
	}
	if !r.anyOK && res.Failure != "" && res.Failure != "max-calls" {
		r.streak++
		if r.streak >= r.failFast {
			r.stop(fmt.Errorf("%w: the first %d calls failed (last: %s)", ErrTargetDead, r.streak, res.Failure))
		}
	}
}

// call runs one simulated caller, a SIP phone or a browser.
func (r *runner) call(ctx context.Context, id int, hold time.Duration) CallResult {
	if r.sc.Browsers.browser(id) {
		return r.browserCaller(ctx, id, hold)
	}
	res := CallResult{ID: id, Start: time.Now()}
	var link *Link
	if r.sc.Downlink != (Impairment{}) || r.sc.Uplink != (Impairment{}) {
		up, down := r.sc.Uplink, r.sc.Downlink
		up.Seed += uint64(id) // each caller its own (reproducible) network
		down.Seed += uint64(id)
		var err error
		if link, err = NewLink(up, down); err != nil {
			res.Failure = "link: " + err.Error()
			return res
		}
		defer link.Close()
	}
	timeout := r.setupTimeout()
	// Set-up deadline: with a provisional response the call is CANCELed
	// (sipgo waits for the 487); without any response there is nobody to
	// CANCEL (RFC 3261 9.1), so the attempt is abandoned at once.
	// The run ending (ctx) ends set-up the same way.
	sctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var progressed atomic.Bool
	giveUp := func() {
		if progressed.Load() {
			cancel(context.DeadlineExceeded)
		} else {
			cancel(sipgo.WaitAnswerForceCancelErr)
		}
	}
	timer := time.AfterFunc(timeout, giveUp)
	stopAfter := context.AfterFunc(ctx, giveUp)
	defer stopAfter()
	leg, err := r.phone.dial(sctx, r.sc.Target, CallOptions{FromUser: fmt.Sprintf("sim%d", id), Link: link,
		onProgress: func(int) { progressed.Store(true) }})
	timedOut := !timer.Stop()
	cancel(nil)
	res.Setup = time.Since(res.Start)
	if err != nil {
		res.Failure = failureReason(err)
		if timedOut && ctx.Err() == nil {
			res.Failure = "setup timeout"
			if !progressed.Load() {
				res.Failure = "no response"
			}
		}
		return res
	}
	res.Answered = true
	r.answered.Add(1)
	pc := &PhoneCall{Leg: leg, far: leg}
	r.converse(ctx, &res, simLeg{far: leg, press: pc.SendDTMF, firstRTP: pollFirstRTP(leg.Endpoint(), leg.Done())}, hold)
	return res
}

// simLeg is an answered call of a simulated caller, whatever carries it.
type simLeg struct {
	far   farEnd
	press func(digits string) error
	// firstRTP returns when the first RTP packet arrived (zero: none).
	firstRTP func() time.Time
	// endCause names why the far end ended the call ("" for the default
	// "hung up by far end").
	endCause func() string
	// sent is when the call request went (INVITE, the "call" message):
	// first audio counts from it. Zero: the attempt's start.
	sent time.Time
}

// pollFirstRTP watches ep's received-packet counter (every 5 ms, until
// the first packet, done, or 30 s) and returns a func that says when the
// first one was seen; the watcher ends by itself.
func pollFirstRTP(ep *media.Endpoint, done <-chan struct{}) func() time.Time {
	var at atomic.Int64
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		limit := time.After(30 * time.Second)
		for {
			if ep.Stats().PacketsIn > 0 {
				at.Store(time.Now().UnixNano())
				return
			}
			select {
			case <-t.C:
			case <-done:
				return
			case <-limit:
				return
			}
		}
	}()
	return func() time.Time {
		if n := at.Load(); n != 0 {
			return time.Unix(0, n)
		}
		return time.Time{}
	}
}

// converse runs the caller's steps on an answered call, holds it, takes
// its RTP stats and hangs up; res gets the checks, failure and figures.
func (r *runner) converse(ctx context.Context, res *CallResult, leg simLeg, hold time.Duration) {
	answered := time.Now()
	var ear *ear
	if !r.sc.NoAudio {
		ear = newEar(leg.far.Endpoint())
	}
	farEnded := func() string {
		if leg.endCause != nil {
			if why := leg.endCause(); why != "" {
				return why
			}
		}
		return "hung up by far end"
	}
	hung := false
	for _, st := range r.sc.Steps {
		if ctx.Err() != nil {
			break
		}
		ok, after, err := r.step(ctx, leg, ear, st)
		if st.IsCheck() && !r.sc.NoAudio {
			res.Checks = append(res.Checks, Check{Name: st.String(), Heard: ok, After: after})
			if !ok && res.Failure == "" {
				res.Failure = "not heard: " + st.String()
			}
		}
		if err != nil {
			if res.Failure == "" {
				res.Failure = err.Error()
				if errors.Is(err, errFarHangup) {
					res.Failure = farEnded()
				}
			}
			break
		}
		if st.Kind == StepHangup {
			hung = true
			break
		}
	}
	if !hung {
		select {
		case <-time.After(time.Until(answered.Add(hold))):
		case <-leg.far.Done():
		case <-ctx.Done():
		}
	}
	select {
	case <-leg.far.Done():
		if !hung && res.Failure == "" && time.Since(answered) < hold-100*time.Millisecond {
			res.Failure = farEnded()
		}
	default:
	}
	if at := leg.firstRTP(); !at.IsZero() {
		sent := leg.sent
		if sent.IsZero() {
			sent = res.Start
		}
		res.FirstAudio = at.Sub(sent)
	} else if !r.sc.NoAudio && r.sc.hasChecks() && (res.Failure == "" || strings.HasPrefix(res.Failure, "not heard: ")) {
		res.Failure = "no audio" // nothing came at all: say so rather than what was not heard
	}
	es := leg.far.Endpoint().Stats()
	if es.Expected > 0 {
		res.LossPercent = 100 * float64(es.Lost) / float64(es.Expected)
	}
	res.Jitter, res.MOS = es.Jitter, es.MOS
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = leg.far.Hangup(hctx)
	hcancel()
	res.Duration = time.Since(answered)
}

// errFarHangup is a step cut short by the far end ending the call.
var errFarHangup = errors.New("hung up by far end")

func (r *runner) step(ctx context.Context, leg simLeg, e *ear, st Step) (heard bool, after time.Duration, err error) {
	start := time.Now()
	wait := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-leg.far.Done():
			return errFarHangup
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	switch st.Kind {
	case StepWait:
		return false, 0, wait(st.Duration)
	case StepHangup:
		return false, 0, nil
	case StepPress:
		return false, 0, leg.press(st.Digits)
	case StepPlayTone:
		leg.far.Endpoint().Play(audio.NewTone(audio.Tone{Freqs: []float64{st.Freq}, Duration: st.Duration}), nil)
		return false, 0, nil
	}
	if e == nil {
		return false, 0, nil
	}
	deadline := time.Now().Add(st.Timeout)
	e.reset()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if e.test(st) {
			return true, time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return false, time.Since(start), nil
		}
		select {
		case <-t.C:
		case <-leg.far.Done():
			return false, time.Since(start), errFarHangup
		case <-ctx.Done():
			return false, time.Since(start), ctx.Err()
		}
	}
}

// failureReason names why a call did not connect, for the "failed by
// reason" table.
func failureReason(err error) string {
	var se *sip.StatusError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("SIP %d %s", se.Code, se.Reason)
	case errors.Is(err, context.DeadlineExceeded):
		return "setup timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return shortReason(err)
}

// ear keeps the last second of what a simulated caller hears, for cheap
// checks (one Goertzel filter, not a frequency sweep) every 50 ms.
type ear struct {
	mu   sync.Mutex
	buf  []int16 // ring
	n    int     // samples written since reset
	pos  int
	rate int
	tmp  []int16
}

func newEar(ep *media.Endpoint) *ear {
	e := &ear{}
	ep.SetSink(media.SinkFunc(func(f *media.Frame) error {
		e.mu.Lock()
		if e.rate != f.Rate || e.buf == nil {
			e.rate, e.buf, e.pos, e.n = f.Rate, make([]int16, f.Rate), 0, 0
		}
		for _, s := range f.Samples {
			e.buf[e.pos] = s
			e.pos = (e.pos + 1) % len(e.buf)
		}
		e.n += len(f.Samples)
		e.mu.Unlock()
		return nil
	}))
	return e
}

func (e *ear) reset() {
	e.mu.Lock()
	e.n = 0
	e.mu.Unlock()
}

// last copies the last d of audio heard since reset, false if not enough.
func (e *ear) last(d time.Duration) ([]int16, int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rate == 0 {
		return nil, 0, false
	}
	k := int(d.Seconds() * float64(e.rate))
	if k > len(e.buf) {
		k = len(e.buf)
	}
	if e.n < k || k == 0 {
		return nil, 0, false
	}
	e.tmp = e.tmp[:0]
	for i := len(e.buf) - k; i < len(e.buf); i++ {
		e.tmp = append(e.tmp, e.buf[(e.pos+i)%len(e.buf)])
	}
	return e.tmp, e.rate, true
}

func (e *ear) test(st Step) bool {
	switch st.Kind {
	case StepExpectSound:
		s, _, ok := e.last(200 * time.Millisecond)
		return ok && dsp.RMS(s) > 300
	case StepExpectTone:
		s, rate, ok := e.last(200 * time.Millisecond)
		if !ok {
			return false
		}
		rms := dsp.RMS(s)
		return rms > 300 && dsp.GoertzelPower(s, rate, st.Freq)/(rms*rms) > 0.5
	case StepExpectSilence:
		d := st.Duration
		if d > time.Second {
			d = time.Second
		}
		s, _, ok := e.last(d)
		return ok && dsp.RMS(s) < 100
	}
	return false
}

// dial places a call with opts and returns the answered leg.
func (p *Phone) dial(ctx context.Context, uri string, opts CallOptions) (*sip.Leg, error) {
	do := sip.DialOptions{FromUser: opts.FromUser, FromHost: GuestDomain, SRTP: p.opts.SRTP, OnProgress: opts.onProgress}
	if p.opts.User != "" {
		do.FromUser, do.FromHost, do.Username, do.Password = p.opts.User, "", p.opts.User, p.opts.Password
	}
	if opts.Link != nil {
		do.OfferRTPAddr, do.RTPVia = opts.Link.FarAddr(), opts.Link.Via
	}
	return p.agent.Dial(ctx, uri, do)
}

// Probe sends one SIP OPTIONS over UDP to addr (host:port) and waits up
// to timeout: nil when anything answers with a SIP response, an error
// saying "connection refused" when the host says nothing listens there,
// or a timeout error when nothing answers.
func Probe(ctx context.Context, addr string, timeout time.Duration) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	defer c.Close()
	local := c.LocalAddr().(*net.UDPAddr).AddrPort()
	branch := fmt.Sprintf("z9hG4bK-probe-%d", time.Now().UnixNano())
	host := addr
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		host = ap.String()
	}
	msg := "OPTIONS sip:" + host + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local.String() + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:probe@" + local.String() + ">;tag=" + branch[8:] + "\r\n" +
		"To: <sip:" + host + ">\r\n" +
		"Call-ID: " + branch + "@switchboard-load\r\n" +
		"CSeq: 1 OPTIONS\r\n" +
		"Contact: <sip:probe@" + local.String() + ">\r\n" +
		"Accept: application/sdp\r\n" +
		"Content-Length: 0\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("probe %s: %w", addr, err)
		}
		if strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			return nil
		}
	}
}
