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
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// SIPServer is what the harness needs of the server under test
// (framework.Server has it).
type SIPServer interface{ SIPAddr() netip.AddrPort }

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
	baseG   int
	baseFD  int
}

// New starts a harness against srv. Call it after srv is started (its
// clean-up must run after the harness's). At the end of the test it
// closes every phone, call and link it made and then fails the test if
// goroutines or file descriptors (sockets, RTP ports) stay above what the
// process had when New was called for more than 5 s. The check counts the
// whole process, so it is meaningful only in tests that do not run in
// parallel (no t.Parallel) with others.
func New(t testing.TB, srv SIPServer) *Harness {
	t.Helper()
	h := &Harness{t: t, target: srv.SIPAddr(), Timeout: 10 * time.Second, baseG: runtime.NumGoroutine(), baseFD: openFDs()}
	t.Cleanup(h.leakCheck)
	return h
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
// if the call is not answered within the harness timeout.
func (h *Harness) Call(user string, opts HarnessCallOptions) *Call {
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
		var err error
		if link, err = NewLink(opts.Uplink, opts.Downlink); err != nil {
			h.t.Fatalf("testharness: %v", err)
		}
		h.t.Cleanup(link.Close)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	uri := fmt.Sprintf("sip:%s@%s", user, h.target)
	pc, err := p.CallWith(ctx, uri, CallOptions{Link: link})
	if err != nil {
		h.t.Fatalf("testharness: call %s: %v", uri, err)
	}
	c := &Call{PhoneCall: pc, Link: link, h: h}
	h.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pc.Hangup(ctx)
	})
	return c
}

// HarnessCallOptions configure Harness.Call.
type HarnessCallOptions struct {
	// Phone dials instead of the harness's default phone.
	Phone *Phone
	// Uplink and Downlink impair the call's RTP (phone → server and
	// server → phone); both zero means no relay at all.
	Uplink, Downlink Impairment
}

// Call is a harness call: a PhoneCall with assertions that fail the test.
type Call struct {
	*PhoneCall
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
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.WaitTone(ctx, freq, 20)
	if err != nil {
		c.h.t.Fatalf("expected a %.0f Hz tone: %v", freq, err)
	}
	return l
}

// ExpectSound fails the test unless the call hears something (a prompt)
// within the harness timeout.
func (c *Call) ExpectSound() Listen {
	c.h.t.Helper()
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.WaitSound(ctx)
	if err != nil {
		c.h.t.Fatalf("expected to hear something: %v", err)
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
		c.h.t.Fatalf("expected %s of silence: %v", d, err)
	}
}

// ExpectDigits fails the test unless the RFC 4733 digits the call has
// received end with digits within the harness timeout.
func (c *Call) ExpectDigits(digits string) {
	c.h.t.Helper()
	deadline := time.Now().Add(c.h.Timeout)
	for !strings.HasSuffix(c.Digits(), digits) {
		if time.Now().After(deadline) {
			c.h.t.Fatalf("expected digits %q, received %q", digits, c.Digits())
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
			c.h.t.Fatalf("expected a %s event %q; got %v", kind, value, evs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ExpectHangup fails the test unless the far end ends the call within the
// harness timeout.
func (c *Call) ExpectHangup() {
	c.h.t.Helper()
	select {
	case <-c.Leg.Done():
	case <-time.After(c.h.Timeout):
		c.h.t.Fatalf("expected the far end to hang up within %s", c.h.Timeout)
	}
}

// Press sends digits as RFC 4733 events (or in-band tones without
// telephone-event) and fails the test if it cannot.
func (c *Call) Press(digits string) {
	c.h.t.Helper()
	if err := c.SendDTMF(digits); err != nil {
		c.h.t.Fatalf("press %q: %v", digits, err)
	}
}

// PlayTone sends a tone of freq for d to the far end.
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

func (h *Harness) leakCheck() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs()
		if g <= h.baseG && fd <= h.baseFD {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			h.t.Errorf("testharness: leak: %d goroutines (had %d), %d open files (had %d) 5 s after the test\n%s", g, h.baseG, fd, h.baseFD, buf)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
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
