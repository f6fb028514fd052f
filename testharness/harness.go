package testharness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/sip"
)

// SIPServer is what the harness needs of the server under test
// (framework.Server has it).
type SIPServer interface{ SIPAddr() netip.AddrPort }

// Addr is a SIPServer at a fixed address, for a server the test does not
// hold as a value (another process, an example program).
type Addr netip.AddrPort

// SIPAddr returns the address.
func (a Addr) SIPAddr() netip.AddrPort { return netip.AddrPort(a) }

// Server is a server the harness can run for a test (framework.Server
// has it): it serves until ctx ends and says when it is ready.
type Server interface {
	SIPServer
	ListenAndServe(ctx context.Context) error
	Ready() <-chan struct{}
}

// Serve runs srv until the test ends and fails the test if it is not
// ready within 5 s. stop shuts it down and waits up to 15 s for it to
// finish (failing the test otherwise); it runs at clean-up too, and a
// second call does nothing, so a test may stop the server early.
func Serve(t testing.TB, srv Server) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("testharness: server did not start: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("testharness: server did not start in 5 s")
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("testharness: server did not shut down in 15 s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Harness runs call scenarios against one SIP server inside a go test,
// as net/http/httptest does for handlers: phones and calls are one line
// each, expectations fail the test with what was heard instead, and
// everything is closed when the test ends, followed by a leak check.
type Harness struct {
	t      testing.TB
	target netip.AddrPort
	// Timeout bounds every Expect (default 10 s).
	Timeout time.Duration
	phone   *Phone
	srv     SIPServer
	baseG   int
	baseFD  int
	// baseFiles is what the open descriptors were at New, and baseStacks
	// which goroutines ran (by where they were created), to name the new
	// ones in a leak report.
	baseFiles  map[string]int
	baseStacks map[string]int
}

// New starts a harness against srv. Call it after srv is started (its
// clean-up must run after the harness's). At the end of the test it
// closes every phone, call and link it made and then fails the test if
// goroutines or file descriptors (sockets, RTP ports) stay above what the
// process had when New was called for more than 10 s (not counting the
// goroutines of SIP transactions waiting out their timers). The check counts the
// whole process, so it is meaningful only in tests that do not run in
// parallel (no t.Parallel) with others.
func New(t testing.TB, srv SIPServer) *Harness {
	t.Helper()
	h := &Harness{t: t, target: srv.SIPAddr(), srv: srv, Timeout: 10 * time.Second, baseG: goroutines(), baseFD: openFDs(), baseFiles: openFiles(), baseStacks: goroutineOrigins(nil)}
	t.Cleanup(h.leakCheck)
	return h
}

// Own makes the harness close phones made before New (because the server
// needed their URIs) at the end of the test, before the leak check, so
// the sockets and goroutines they open during the test do not count as
// leaks. Closing a phone twice is harmless.
func (h *Harness) Own(phones ...*Phone) {
	for _, p := range phones {
		h.t.Cleanup(p.Close)
	}
}

// Phone starts a virtual phone that the harness closes at the end; it
// logs nowhere unless opts.Logger is set.
func (h *Harness) Phone(opts PhoneOptions) *Phone {
	h.t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p, err := NewPhone(opts)
	if err != nil {
		h.t.Fatalf("testharness: phone: %v", err)
	}
	h.t.Cleanup(p.Close)
	return p
}

// Call dials user at the server from the harness's default phone (or
// opts.Phone) through a link with opts' impairments, and fails the test
// if the call is not answered within the harness timeout. The call is
// hung up at the end of the test.
func (h *Harness) Call(user string, opts HarnessCallOptions) *Call {
	h.t.Helper()
	c, err := h.dial(user, opts)
	if err != nil {
		h.t.Fatalf("testharness: %s: %v", nameOr(opts.Name), err)
	}
	return c
}

// CallFails dials user as Call does and fails the test if the call is
// answered; it returns the error the dial ended with (a *sip.StatusError
// for a refusal).
func (h *Harness) CallFails(user string, opts HarnessCallOptions) error {
	h.t.Helper()
	c, err := h.dial(user, opts)
	if err == nil {
		c.End()
		h.t.Fatalf("testharness: %s: the call to %s was answered, want it refused", nameOr(opts.Name), user)
	}
	return err
}

func (h *Harness) dial(user string, opts HarnessCallOptions) (*Call, error) {
	h.t.Helper()
	p := opts.Phone
	if p == nil {
		if h.phone == nil {
			h.phone = h.Phone(PhoneOptions{})
		}
		p = h.phone
	}
	var link *Link
	if opts.Uplink != (Impairment{}) || opts.Downlink != (Impairment{}) {
		if opts.Dial != nil {
			h.t.Fatalf("testharness: %s: HarnessCallOptions.Dial carries no impairments", nameOr(opts.Name))
		}
		var err error
		if link, err = NewLink(opts.Uplink, opts.Downlink); err != nil {
			h.t.Fatalf("testharness: %v", err)
		}
		h.t.Cleanup(link.Close)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	uri := opts.URI
	if uri == "" {
		uri = fmt.Sprintf("sip:%s@%s", user, h.target)
	}
	var pc *PhoneCall
	var err error
	if opts.Dial != nil {
		pc, err = p.Dial(ctx, uri, *opts.Dial)
	} else {
		pc, err = p.CallWith(ctx, uri, CallOptions{Link: link, FromUser: opts.FromUser})
	}
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", uri, err)
	}
	c := h.Adopt(pc, opts.Name)
	c.Link = link
	return c, nil
}

// HarnessCallOptions configure Harness.Call.
type HarnessCallOptions struct {
	// Name names the call in failure messages ("A", "the agent").
	Name string
	// Phone dials instead of the harness's default phone.
	Phone *Phone
	// URI is dialled instead of user at the server (another server, a
	// transport parameter, a registered user's contact).
	URI string
	// FromUser is the caller id's user part (see CallOptions).
	FromUser string
	// Dial, if set, dials with these SIP options (caller id, digest
	// credentials, extra headers) instead; it carries no impairments.
	Dial *sip.DialOptions
	// Uplink and Downlink impair the call's RTP (phone → server and
	// server → phone); both zero means no relay at all.
	Uplink, Downlink Impairment
}

// Answerer is an endpoint that answers calls by itself and hands them
// over: a Phone (unless PhoneOptions.OnInvite is set) or a Browser.
type Answerer interface{ Incoming() <-chan *PhoneCall }

// ExpectIncoming fails the test unless p answers a call within the
// harness timeout, and returns that call, named name and hung up at the
// end of the test.
func (h *Harness) ExpectIncoming(p Answerer, name string) *Call {
	h.t.Helper()
	return h.Adopt(WaitIncoming(h.t, p, h.Timeout, name), name)
}

// WaitIncoming fails t unless p answers a call within d, and returns it;
// name says who should have been called. It is ExpectIncoming for tests
// without a harness.
func WaitIncoming(t testing.TB, p Answerer, d time.Duration, name string) *PhoneCall {
	t.Helper()
	select {
	case pc := <-p.Incoming():
		return pc
	case <-time.After(d):
		t.Fatalf("%s was never called (waited %s)", name, d)
		return nil
	}
}

// Adopt gives a call made without the harness (a PhoneCall from
// Phone.Dial, a leg the test answered) the harness's assertions, names
// it name and hangs it up at the end of the test.
func (h *Harness) Adopt(pc *PhoneCall, name string) *Call {
	c := &Call{PhoneCall: pc, Name: nameOr(name), h: h}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pc.Hangup(ctx)
	})
	return c
}

// Register registers phone p as user at registrar (host:port, with
// ";transport=tcp" or ";transport=tls" to register over a connection;
// "" is the server's UDP address) and fails the test if the registrar
// does not accept it within the harness timeout.
func (h *Harness) Register(p *Phone, registrar, user, password string) {
	h.t.Helper()
	if registrar == "" {
		registrar = h.target.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	if err := p.Register(ctx, registrar, user, password); err != nil {
		h.t.Fatalf("testharness: register %s at %s: %v", user, registrar, err)
	}
}

// nameOr is name, or "the call" when it is empty.
func nameOr(name string) string {
	if name == "" {
		return "the call"
	}
	return name
}

// Context returns a context that ends after the harness timeout or at
// the end of the test, for the verbs of the sip and media packages a test
// calls directly.
func (h *Harness) Context() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	h.t.Cleanup(cancel)
	return ctx
}

// Eventually fails the test unless cond holds within the harness timeout
// (checked every 20 ms); what says what was awaited.
func (h *Harness) Eventually(what string, cond func() bool) {
	h.t.Helper()
	WaitUntil(h.t, h.Timeout, what, cond)
}

// WaitUntil fails t unless cond holds within d (checked every 20 ms);
// what says what was awaited. It is Eventually for tests without a
// harness (in-memory calls, servers not yet started).
func WaitUntil(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// ExpectIdle fails the test unless the server has no calls within the
// harness timeout; it needs a server that counts them (framework.Server
// does) and fails the test otherwise.
func (h *Harness) ExpectIdle() {
	h.t.Helper()
	s, ok := h.srv.(interface{ ActiveCalls() int })
	if !ok {
		h.t.Fatalf("testharness: ExpectIdle: %T does not count its calls", h.srv)
	}
	h.Eventually("the server's calls to end", func() bool { return s.ActiveCalls() == 0 })
}

// Await fails the test unless a value arrives on ch within the harness
// timeout, and returns it; what says what was awaited.
func Await[T any](h *Harness, ch <-chan T, what string) T {
	h.t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(h.Timeout):
		h.t.Fatalf("timed out after %s waiting for %s", h.Timeout, what)
		var zero T
		return zero
	}
}

// Call is a harness call: a PhoneCall with assertions that fail the test.
type Call struct {
	*PhoneCall
	// Name names the call in failure messages.
	Name string
	// Link is the impairing relay, nil without impairments.
	Link *Link
	h    *Harness
}

func (c *Call) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.h.Timeout)
}

// ExpectTone fails the test unless a tone of freq ± 20 Hz dominates the
// last 200 ms of what the call hears within the harness timeout.
func (c *Call) ExpectTone(freq float64) Listen {
	c.h.t.Helper()
	return c.ExpectToneBetween(freq-20, freq+20)
}

// ExpectToneBetween fails the test unless a tone between lo and hi Hz
// (the dominant one of a dual tone such as ringback) dominates the last
// 200 ms of what the call hears within the harness timeout.
func (c *Call) ExpectToneBetween(lo, hi float64) Listen {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.WaitFor(ctx, 200*time.Millisecond, func(l Listen) bool {
		return l.RMS > 300 && l.Frequency >= lo && l.Frequency <= hi
	})
	if err != nil {
		c.h.t.Fatalf("%s: expected a tone of %.0f-%.0f Hz: %v", c.Name, lo, hi, err)
	}
	return l
}

// ExpectInMix fails the test unless, within the harness timeout, f
// makes up at least share of what the call hears (see ToneShare) in half
// a second or more heard after the call: one tone among several in a
// room or a bridge. what says who should hear it from whom.
func (c *Call) ExpectInMix(what string, f, share float64) {
	c.h.t.Helper()
	mark := c.Mark()
	deadline := time.Now().Add(c.h.Timeout)
	for {
		time.Sleep(100 * time.Millisecond)
		_, rate := c.Heard(mark)
		if c.Mark()-mark >= rate/2 && rate > 0 && c.ToneShare(mark, f) >= share {
			return
		}
		if time.Now().After(deadline) {
			c.h.t.Fatalf("%s: %s: %.0f Hz not heard (share %.2f, want %.2f)", c.Name, what, f, c.ToneShare(mark, f), share)
		}
	}
}

// ExpectAbsent listens for d and fails the test if f made up more than
// maxShare of what the call heard in that time (see ToneShare): someone
// must not hear something (a whisper, a room they left). what says who
// must not hear it from whom.
func (c *Call) ExpectAbsent(what string, f, maxShare float64, d time.Duration) {
	c.h.t.Helper()
	mark := c.Mark()
	time.Sleep(d)
	if share := c.ToneShare(mark, f); share > maxShare {
		c.h.t.Errorf("%s: %s: %.0f Hz heard (share %.3f, want at most %.3f)", c.Name, what, f, share, maxShare)
	}
}

// ExpectSound fails the test unless the call hears something (a prompt)
// within the harness timeout.
func (c *Call) ExpectSound() Listen {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.WaitSound(ctx)
	if err != nil {
		c.h.t.Fatalf("%s: expected to hear something: %v", c.Name, err)
	}
	return l
}

// ExpectSilence fails the test unless the call hears d of silence
// (RMS under 100) within the harness timeout.
func (c *Call) ExpectSilence(d time.Duration) {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if _, err := c.WaitFor(ctx, d, func(l Listen) bool { return l.RMS < 100 }); err != nil {
		c.h.t.Fatalf("%s: expected %s of silence: %v", c.Name, d, err)
	}
}

// ExpectDigits fails the test unless the RFC 4733 digits the call has
// received, all of them, are digits within the harness timeout (a digit
// received twice fails it).
func (c *Call) ExpectDigits(digits string) {
	c.h.t.Helper()
	deadline := time.Now().Add(c.h.Timeout)
	for got := c.Digits(); got != digits; got = c.Digits() {
		if time.Now().After(deadline) || !strings.HasPrefix(digits, got) {
			c.h.t.Fatalf("%s: expected digits %q, received %q", c.Name, digits, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ExpectEvent fails the test unless an event of kind (with value, unless
// value is "") happens on the call within the harness timeout; it returns
// the first such event, including one that already happened.
func (c *Call) ExpectEvent(kind EventKind, value string) Event {
	c.h.t.Helper()
	deadline := time.Now().Add(c.h.Timeout)
	for {
		evs := c.Events()
		for _, e := range evs {
			if e.Kind == kind && (value == "" || e.Value == value) {
				return e
			}
		}
		if time.Now().After(deadline) {
			c.h.t.Fatalf("%s: expected a %s event %q; got %v", c.Name, kind, value, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ExpectHangup fails the test unless the far end ends the call within the
// harness timeout.
func (c *Call) ExpectHangup() {
	c.h.t.Helper()
	select {
	case <-c.far.Done():
	case <-time.After(c.h.Timeout):
		c.h.t.Fatalf("%s: expected the far end to hang up within %s", c.Name, c.h.Timeout)
	}
}

// Press sends digits as RFC 4733 events (or in-band tones without
// telephone-event) and fails the test if it cannot.
func (c *Call) Press(digits string) {
	c.h.t.Helper()
	if err := c.SendDTMF(digits); err != nil {
		c.h.t.Fatalf("%s: press %q: %v", c.Name, digits, err)
	}
}

// PlayTone sends a tone of freq for d (0: until something else plays)
// to the far end.
func (c *Call) PlayTone(freq float64, d time.Duration) {
	c.Play(audio.NewTone(audio.Tone{Freqs: []float64{freq}, Duration: d}))
}

// PlayWAV sends a WAV file (any rate media reads, resampled) to the far
// end and fails the test if it cannot be read.
func (c *Call) PlayWAV(path string) {
	c.h.t.Helper()
	src, err := audio.OpenWAV(path)
	if err != nil {
		c.h.t.Fatalf("play %s: %v", path, err)
	}
	c.Play(src)
}

// Say speaks text to the far end with espeak-ng (audio.TTS) and fails the
// test if it cannot synthesise.
func (c *Call) Say(text string) {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	src, err := (&audio.TTS{}).Speech(ctx, text, "", c.Leg.Endpoint().Config().Codec.SampleRate)
	if err != nil {
		c.h.t.Fatalf("say %q: %v", text, err)
	}
	c.Play(src)
}

// Record writes everything the call has heard so far to a WAV file.
func (c *Call) Record(path string) {
	c.h.t.Helper()
	samples, rate := c.Heard(0)
	f, err := os.Create(path)
	if err == nil {
		err = audio.WriteWAV(f, max(rate, 8000), samples)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		c.h.t.Fatalf("record %s: %v", path, err)
	}
}

// MOS is the E-model estimate of what the call receives (from its
// measured loss and jitter), 0 before any packet arrived.
func (c *Call) MOS() float64 { return c.Leg.Endpoint().Stats().MOS }

// Stats returns the call's RTP counters.
func (c *Call) Stats() media.EndpointStats { return c.Leg.Endpoint().Stats() }

// End hangs the call up now (it is hung up at the end of the test anyway).
func (c *Call) End() {
	ctx, cancel := c.ctx()
	defer cancel()
	_ = c.Hangup(ctx)
}

// ExpectTwoWayAudio plays a tone of mine from c and one of theirs from
// other, and fails the test unless each hears the other's tone within
// the harness timeout: the two are connected both ways.
func (c *Call) ExpectTwoWayAudio(other *Call, mine, theirs float64) {
	c.h.t.Helper()
	c.PlayTone(mine, 0)
	other.PlayTone(theirs, 0)
	other.ExpectTone(mine)
	c.ExpectTone(theirs)
}

// HangUp sends BYE now and fails the test if the far end does not accept
// it within the harness timeout.
func (c *Call) HangUp() {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	if err := c.Hangup(ctx); err != nil {
		c.h.t.Fatalf("%s: hang up: %v", c.Name, err)
	}
}

// leakGrace is how long the leak check waits for the counts to come
// down: longer than sipgo's Timer K (5 s), during which a finished
// non-INVITE transaction (the server's BYE) keeps the server's outgoing
// UDP socket and its reader open. It costs nothing when nothing lingers.
const leakGrace = 10 * time.Second

func (h *Harness) leakCheck() {
	deadline := time.Now().Add(leakGrace)
	for {
		g, fd := runtime.NumGoroutine(), openFDs()
		if g > h.baseG { // the cheap count first; then without transactions
			g = goroutines()
		}
		if g <= h.baseG && fd <= h.baseFD {
			return
		}
		if time.Now().After(deadline) {
			var stacks []string
			pooled := 0
			goroutineOrigins(func(origin, stack string) {
				if strings.Contains(stack, "testharness.(*Harness).leakCheck") {
					return // this check itself (New ran on another stack)
				}
				if h.baseStacks[origin] > 0 {
					h.baseStacks[origin]--
				} else {
					stacks = append(stacks, stack)
					if strings.Contains(stack, "emiago/sipgo/sip.(*TransportUDP).readUDPConnection") {
						pooled++
					}
				}
			})
			if len(stacks) == 0 && fd <= h.baseFD {
				// Every goroutine alive now was there at New (by where it
				// was created and what it runs): the count differs only
				// because one of them left a state the count leaves out
				// (a transaction's or an idle actor worker's select) for
				// another. Nothing was started and left behind.
				return
			}
			// A UDP socket sipgo opened to send a request (say the server's
			// BYE to a phone) stays in its connection pool, with its
			// reader, for reuse while the server runs (sipgo's
			// TransportIdleConnection): one goroutine and one descriptor
			// each, kept by design, not leaked.
			if pooled > 0 && g-pooled <= h.baseG && fd-pooled <= h.baseFD {
				h.t.Logf("testharness: %d UDP socket(s) the server's SIP stack keeps for reuse (sipgo's connection pool) after the test", pooled)
				return
			}
			var added []string
			for f, n := range openFiles() {
				for range n - h.baseFiles[f] {
					added = append(added, f)
				}
			}
			h.t.Errorf("testharness: leak: %d goroutines (had %d), %d open files (had %d; new: %v) %s after the test; goroutines not there at New:\n%s",
				g, h.baseG, fd, h.baseFD, added, leakGrace, strings.Join(stacks, "\n\n"))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goroutines counts the process's goroutines except those waiting in
// SIP transactions, which sipgo keeps for their RFC 3261 timers after a
// call has ended (Timer I and K: 5 s; D, F and J: 32 s over UDP; e.g. a
// server's BYE to a phone that hung up and closed at the same moment):
// goroutines running transaction code, or blocked (not in I/O) in a
// sipgo function. They end on their own and hold no socket; a leaked
// transport shows in the descriptor count.
func goroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n, tx := 0, 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		n++
		header, frames, _ := strings.Cut(g, "\n")
		if strings.Contains(g, "emiago/sipgo/sip.(*ServerTx)") || strings.Contains(g, "emiago/sipgo/sip.(*ClientTx)") ||
			(strings.Contains(header, "[select") && strings.HasPrefix(frames, "github.com/emiago/sipgo")) {
			tx++
		}
		// An idle worker of a running server's or agent's pool (actor
		// mailboxes, flows, INVITE handling): it leaves after a few idle
		// seconds, or at shutdown.
		if strings.Contains(header, "[chan receive") && strings.HasPrefix(frames, "github.com/switchboard-voice/switchboard/internal/workpool.(*Pool).work") {
			tx++
		}
	}
	if len(buf) == cap(buf) { // truncated: count them all
		return runtime.NumGoroutine()
	}
	return n - tx
}

// goroutineOrigins counts the process's goroutines by where they were
// created and what they run (their stack without addresses and
// goroutine ids), calling each, if set, with every goroutine's origin
// and stack.
func goroutineOrigins(each func(origin, stack string)) map[string]int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	m := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		_, frames, _ := strings.Cut(g, "\n")
		var fns []string
		for _, line := range strings.Split(frames, "\n") {
			if !strings.HasPrefix(line, "\t") {
				fn, _, _ := strings.Cut(line, "(0x")
				fn, _, _ = strings.Cut(fn, " in goroutine")
				fns = append(fns, fn)
			}
		}
		origin := strings.Join(fns, " < ")
		m[origin]++
		if each != nil {
			each(origin, g)
		}
	}
	return m
}

// openFiles counts the process's open descriptors by what they are
// (a path, "socket:[inode]" names each socket), nil without /proc.
func openFiles() map[string]int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	m := make(map[string]int, len(ents))
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[l]++
		}
	}
	return m
}

// openFDs counts the process's open file descriptors (sockets included);
// -1 where /proc is missing, which makes that half of the check pass.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}
