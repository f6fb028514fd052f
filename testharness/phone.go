// Package testharness provides virtual endpoints that really speak SIP and
// RTP, generate audio (tones, DTMF) and analyse what they hear, for
// end-to-end tests, simulations and load generation. It uses sip and media
// as clients and never reaches into framework internals.
package testharness

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/sip"
)

// PhoneOptions configure a virtual phone. The zero value listens on
// 127.0.0.1 with RTP ports 40000-40999.
type PhoneOptions struct {
	// Addr is the phone's SIP address; default "127.0.0.1:0".
	Addr string
	// RTPPortMin, RTPPortMax bound the phone's RTP ports.
	RTPPortMin, RTPPortMax int
	// Codecs offered, in order; nil means codec.Codecs() (PCMU first).
	Codecs []codec.CodecSpec
	Logger *slog.Logger
	// OnInvite, if set, receives calls made to the phone. Otherwise the
	// phone answers them itself after AnswerDelay (or rejects them with
	// RejectCode when it is set) and delivers the answered calls on
	// Incoming.
	OnInvite func(*sip.Leg)
	// AnswerDelay is how long the phone rings before it answers.
	AnswerDelay time.Duration
	// RejectCode, if set, makes the phone refuse calls with this status.
	RejectCode int
	// TLS makes the phone listen for SIP over TLS too and trust roots
	// (e.g. the server's self-signed certificate) when it dials over TLS.
	TLS        bool
	TLSRootCAs *x509.CertPool
	// OnMessage receives MESSAGE requests outside calls (pager mode);
	// nil answers them 404.
	OnMessage func(sip.PagerMessage) int
	// InbandDTMF makes the phone a gateway without RFC 4733: it does not
	// offer telephone-event and SendDTMF plays the digits as tones.
	InbandDTMF bool
	// SRTP is the phone's SRTP policy for calls it places (offer
	// RTP/SAVP with SDES keys) and receives (SRTPRequired refuses plain
	// offers with 488).
	SRTP sip.SRTPPolicy
	// SRTPSuites restricts the SRTP suites the phone offers and accepts
	// (nil: all the sip package supports).
	SRTPSuites []transport.SRTPSuite
	// User and Password, if set, are the From user of calls the phone
	// places and the credentials it answers 401/407 challenges with;
	// otherwise it calls as "harness" without credentials.
	User, Password string
}

// Phone is a virtual SIP phone: a user agent plus an RTP port pool.
type Phone struct {
	opts     PhoneOptions
	agent    *sip.Agent
	ports    *transport.PortPool
	incoming chan *PhoneCall
}

// NewPhone starts a virtual phone.
func NewPhone(opts PhoneOptions) (*Phone, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.RTPPortMin == 0 {
		opts.RTPPortMin, opts.RTPPortMax = 40000, 40999
	}
	ports, err := transport.NewPortPool(opts.RTPPortMin, opts.RTPPortMax)
	if err != nil {
		return nil, err
	}
	ports.RestTime = time.Millisecond
	p := &Phone{opts: opts, ports: ports, incoming: make(chan *PhoneCall, 16)}
	onInvite := opts.OnInvite
	if onInvite == nil {
		onInvite = func(l *sip.Leg) { go p.autoAnswer(l, opts.AnswerDelay, opts.RejectCode) }
	}
	tlsAddr := ""
	if opts.TLS {
		tlsAddr = "127.0.0.1:0"
	}
	agent, err := sip.NewAgent(sip.Config{ListenAddr: opts.Addr, TLSAddr: tlsAddr, Ports: ports, Codecs: opts.Codecs,
		MediaTimeout: -1, UserAgent: "Switchboard-testharness", Logger: opts.Logger, OnInvite: onInvite,
		NoTelephoneEvent: opts.InbandDTMF, OnMessage: opts.OnMessage, TLSRootCAs: opts.TLSRootCAs, SRTP: opts.SRTP,
		SRTPSuites: opts.SRTPSuites})
	if err != nil {
		return nil, err
	}
	if err := agent.Start(); err != nil {
		agent.Close() // its pacer
		return nil, err
	}
	p.agent = agent
	return p, nil
}

func (p *Phone) autoAnswer(l *sip.Leg, delay time.Duration, reject int) {
	_ = l.Ringing()
	select {
	case <-time.After(delay):
	case <-l.Done():
		return
	}
	if reject != 0 {
		_ = l.Reject(reject, "")
		return
	}
	pc := Attach(l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Answer(ctx); err != nil {
		return
	}
	select {
	case p.incoming <- pc:
	default:
	}
}

// Register registers the phone as user at registrar (host:port, with
// ";transport=tcp" or ";transport=tls" to register over a connection) for
// an hour, answering the digest challenge with password.
func (p *Phone) Register(ctx context.Context, registrar, user, password string) error {
	_, err := p.agent.Register(ctx, registrar, user, password, time.Hour)
	return err
}

// Unregister removes the phone's registration as user at registrar
// (REGISTER with expires 0).
func (p *Phone) Unregister(ctx context.Context, registrar, user, password string) error {
	_, err := p.agent.Register(ctx, registrar, user, password, 0)
	return err
}

// Incoming delivers the calls the phone answered by itself.
func (p *Phone) Incoming() <-chan *PhoneCall { return p.incoming }

// URI returns a SIP URI that reaches this phone as user.
func (p *Phone) URI(user string) string { return "sip:" + user + "@" + p.Addr().String() }

// Addr returns the phone's SIP UDP address.
func (p *Phone) Addr() netip.AddrPort { return p.agent.Addr() }

// Close hangs up the phone's calls and stops it.
func (p *Phone) Close() { p.agent.Close() }

// GuestDomain is the From host of the calls a Phone places with Call: a
// domain that is not the server's, so servers treat the phone as a guest
// (no digest challenge) even on the same loopback address.
const GuestDomain = "harness.invalid"

// Call dials uri as the guest sip:harness@GuestDomain and returns once the
// call is answered.
func (p *Phone) Call(ctx context.Context, uri string) (*PhoneCall, error) {
	return p.CallWith(ctx, uri, CallOptions{})
}

// CallOptions change how a phone dials.
type CallOptions struct {
	// FromUser is the caller id's user part; default "harness" (a guest
	// of GuestDomain, or PhoneOptions.User with its credentials).
	FromUser string
	// Link, if set, carries the call's RTP through an impairing relay
	// (the caller keeps it and closes it after the call).
	Link *Link

	onProgress func(code int)
}

// CallWith dials uri with opts and returns once the call is answered.
func (p *Phone) CallWith(ctx context.Context, uri string, opts CallOptions) (*PhoneCall, error) {
	if opts.FromUser == "" {
		opts.FromUser = "harness"
	}
	leg, err := p.dial(ctx, uri, opts)
	if err != nil {
		return nil, err
	}
	return Attach(leg), nil
}

// Dial dials uri with opts (caller id, credentials for a 407, extra
// headers such as Replaces) and returns once the call is answered.
func (p *Phone) Dial(ctx context.Context, uri string, opts sip.DialOptions) (*PhoneCall, error) {
	leg, err := p.agent.Dial(ctx, uri, opts)
	if err != nil {
		return nil, err
	}
	return Attach(leg), nil
}

// CallAs dials uri as a directory user (From and digest credentials) and
// returns once the call is answered.
func (p *Phone) CallAs(ctx context.Context, uri, user, password string) (*PhoneCall, error) {
	leg, err := p.agent.Dial(ctx, uri, sip.DialOptions{FromUser: user, Username: user, Password: password})
	if err != nil {
		return nil, err
	}
	return Attach(leg), nil
}

// PhoneCall is one call of a virtual phone: it records everything it hears
// and can send tones and DTMF.
type PhoneCall struct {
	// Leg is the SIP leg (nil for a call carried in memory).
	Leg *sip.Leg
	// far is what the methods use: the SIP leg or a MemoryLeg's far side.
	far farEnd

	mu     sync.Mutex
	heard  []int16
	rate   int
	digits []rune
	events []Event
}

// EventKind is what happened on a call, as the phone saw it.
type EventKind uint8

const (
	// EventDigit is an RFC 4733 digit received (Value is the digit).
	EventDigit EventKind = iota
	// EventChat is a text message received in the dialog (SIP MESSAGE or
	// INFO; Value is the text).
	EventChat
	// EventHangup is the end of the call (Value is why).
	EventHangup
)

func (k EventKind) String() string {
	switch k {
	case EventDigit:
		return "digit"
	case EventChat:
		return "chat"
	case EventHangup:
		return "hangup"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one thing that happened on a phone's call.
type Event struct {
	Kind  EventKind
	Value string
	Time  time.Time
}

func (pc *PhoneCall) addEvent(k EventKind, v string) {
	pc.mu.Lock()
	pc.events = append(pc.events, Event{Kind: k, Value: v, Time: time.Now()})
	pc.mu.Unlock()
}

// Events returns what happened on the call so far, in order.
func (pc *PhoneCall) Events() []Event {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return append([]Event(nil), pc.events...)
}

// Attach wraps a connected leg (dialled or answered) so that what it hears
// is recorded.
func Attach(leg *sip.Leg) *PhoneCall {
	pc := attach(leg)
	pc.Leg = leg
	return pc
}

// farEnd is what a PhoneCall drives: a SIP leg, or the phone side of a
// MemoryLeg.
type farEnd interface {
	Endpoint() *media.Endpoint
	Hangup(ctx context.Context) error
	Done() <-chan struct{}
	Err() error
	OnChat(fn func(contentType, text string))
}

func attach(far farEnd) *PhoneCall {
	pc := &PhoneCall{far: far}
	far.Endpoint().SetSink(media.SinkFunc(pc.record))
	far.Endpoint().OnDTMF(func(ev media.DTMFEvent) {
		pc.mu.Lock()
		pc.digits = append(pc.digits, ev.Digit)
		pc.events = append(pc.events, Event{Kind: EventDigit, Value: string(ev.Digit), Time: time.Now()})
		pc.mu.Unlock()
	})
	far.OnChat(func(_, text string) { pc.addEvent(EventChat, text) })
	go func() { // ends with the call
		<-far.Done()
		why := "hung up"
		if err := far.Err(); err != nil {
			why = err.Error()
		}
		pc.addEvent(EventHangup, why)
	}()
	return pc
}

// maxHeard bounds the recording (10 minutes at 8 kHz).
const maxHeard = 8000 * 600

func (pc *PhoneCall) record(f *media.Frame) error {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.rate = f.Rate
	if len(pc.heard) < maxHeard {
		pc.heard = append(pc.heard, f.Samples...)
	}
	return nil
}

// Heard returns a copy of the audio heard from sample index from on, and
// the sample rate.
func (pc *PhoneCall) Heard(from int) ([]int16, int) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if from > len(pc.heard) {
		from = len(pc.heard)
	}
	return append([]int16(nil), pc.heard[from:]...), pc.rate
}

// Digits returns the RFC 4733 digits received so far.
func (pc *PhoneCall) Digits() string {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return string(pc.digits)
}

// Mark returns the current length of the recording, to analyse only what
// is heard after it.
func (pc *PhoneCall) Mark() int {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return len(pc.heard)
}

// Play sends src to the far end (replacing what played before).
func (pc *PhoneCall) Play(src media.Source) { pc.far.Endpoint().Play(src, nil) }

// SendDTMF sends digits as RFC 4733 events, 100 ms each with 100 ms gaps;
// when the call has no telephone-event it plays them as in-band tones
// (100 ms on, 100 ms off) instead, replacing what the phone played.
func (pc *PhoneCall) SendDTMF(digits string) error {
	if pc.far.Endpoint().Config().DTMFPayloadType == 0 {
		var srcs []media.Source
		for _, d := range digits {
			s, ok := audio.DTMFTone(d, 100*time.Millisecond, 100*time.Millisecond)
			if !ok {
				return fmt.Errorf("testharness: %q is not a DTMF digit", d)
			}
			srcs = append(srcs, s)
		}
		pc.Play(media.Sequence(srcs...))
		return nil
	}
	for _, d := range digits {
		if err := pc.far.Endpoint().SendDTMF(d, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// Hangup sends BYE.
func (pc *PhoneCall) Hangup(ctx context.Context) error { return pc.far.Hangup(ctx) }

// Listen describes a stretch of heard audio.
type Listen struct {
	RMS       float64 // loudness of the window
	Frequency float64 // dominant frequency in 100..3800 Hz
	Power     float64 // Goertzel power at Frequency
}

// Analyse measures the last window of heard audio.
func (pc *PhoneCall) Analyse(window time.Duration) (Listen, bool) {
	pc.mu.Lock()
	rate := pc.rate
	n := int(window.Seconds() * float64(rate))
	if rate == 0 || len(pc.heard) < n || n == 0 {
		pc.mu.Unlock()
		return Listen{}, false
	}
	s := append([]int16(nil), pc.heard[len(pc.heard)-n:]...)
	pc.mu.Unlock()
	f, p := dsp.DominantFrequency(s, rate, 100, 3800, 10)
	return Listen{RMS: dsp.RMS(s), Frequency: f, Power: p}, true
}

// WaitFor polls the last window of heard audio every 20 ms until cond holds
// or ctx ends; it returns the last measurement.
func (pc *PhoneCall) WaitFor(ctx context.Context, window time.Duration, cond func(Listen) bool) (Listen, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var last Listen
	for {
		if l, ok := pc.Analyse(window); ok {
			last = l
			if cond(l) {
				return l, nil
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("testharness: waiting for audio: %w (last heard: rms %.0f, %.0f Hz)", ctx.Err(), last.RMS, last.Frequency)
		case <-pc.far.Done():
			return last, fmt.Errorf("testharness: call ended while waiting for audio: %v", pc.far.Err())
		case <-t.C:
		}
	}
}

// ToneShare is how much of what the call heard from sample index from on
// (its last second at most) is the frequency f: the Goertzel power at f
// over the total power, near 1 for a clean tone and near 0 when f is
// absent, so a tone can be found in a mix of several.
func (pc *PhoneCall) ToneShare(from int, f float64) float64 {
	s, rate := pc.Heard(from)
	if rate == 0 {
		return 0
	}
	if len(s) > rate {
		s = s[len(s)-rate:]
	}
	r := dsp.RMS(s)
	return dsp.GoertzelPower(s, rate, f) / (r*r + 1)
}

// WaitTone waits until a tone of freq ± tol Hz dominates the last 200 ms.
func (pc *PhoneCall) WaitTone(ctx context.Context, freq, tol float64) (Listen, error) {
	return pc.WaitFor(ctx, 200*time.Millisecond, func(l Listen) bool {
		return l.RMS > 300 && l.Frequency >= freq-tol && l.Frequency <= freq+tol
	})
}

// WaitSound waits until the last 200 ms are not silent.
func (pc *PhoneCall) WaitSound(ctx context.Context) (Listen, error) {
	return pc.WaitFor(ctx, 200*time.Millisecond, func(l Listen) bool { return l.RMS > 300 })
}
