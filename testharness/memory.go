package testharness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// MemoryLeg is a leg carried in memory instead of SIP and UDP: a phone and
// the server's side of its call, joined by transport.MemoryLink. Hand it to
// framework.Server.StartCall (it has the framework's Signaling shape) and
// drive the phone side through the PhoneCall NewMemoryCall returns: what
// it plays reaches the call flow, what the flow plays is recorded and
// analysed. No socket or port is used, so call flows can be tested the way
// net/http/httptest tests handlers.
type MemoryLeg struct {
	id, user, from string
	inbound        bool
	ep, phoneEP    *media.Endpoint
	links          [2]*transport.MemoryLink

	mu       sync.Mutex
	answered bool
	err      error
	done     chan struct{}
	onChat   func(contentType, text string)
	chats    []string // what the server sent the phone
	toPhone  func(contentType, text string)
}

// Errors a MemoryLeg ends with.
var (
	ErrMemoryRemoteHangup = errors.New("remote hangup")
	ErrMemoryLocalHangup  = errors.New("local hangup")
)

// MemoryCallOptions describe an in-memory call.
type MemoryCallOptions struct {
	// User is the called user (the route), From the caller.
	User, From string
	// Codec is used on both sides (zero: PCMU), with telephone-event 101.
	Codec codec.CodecSpec
	// Pacer, if set, ticks both sides' streams (else one goroutine each).
	Pacer *media.Pacer
	// Outbound makes a leg the server dialled (answered already) rather
	// than a call coming in.
	Outbound bool
}

// NewMemoryCall makes an inbound in-memory call and returns the server's
// leg and the phone's end of it. The call ends when either side hangs up.
func NewMemoryCall(opts MemoryCallOptions) (*MemoryLeg, *PhoneCall) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	spec := opts.Codec
	if spec.Name == "" {
		spec, _ = codec.LookupCodec("PCMU", 8000)
	}
	user, from := opts.User, opts.From
	srvEP, phoneEP, links := media.NewMemoryPair(media.EndpointOptions{MediaTimeout: -1, Pacer: opts.Pacer})
	cfg := media.StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101}
	srvEP.Configure(cfg)
	phoneEP.Configure(cfg)
	srvEP.Start()
	phoneEP.Start()
	l := &MemoryLeg{id: "mem-" + hex.EncodeToString(b[:]), user: user, from: from, ep: srvEP, phoneEP: phoneEP,
		links: links, done: make(chan struct{}), inbound: !opts.Outbound, answered: opts.Outbound}
	return l, attach(memoryPhone{l})
}

// ID, Kind, Inbound, User, From and To describe the leg (Signaling).
func (l *MemoryLeg) ID() string    { return l.id }
func (l *MemoryLeg) Kind() string  { return "memory" }
func (l *MemoryLeg) Inbound() bool { return l.inbound }
func (l *MemoryLeg) User() string  { return l.user }
func (l *MemoryLeg) From() string  { return l.from }
func (l *MemoryLeg) To() string    { return l.user }

// Ringing does nothing: there is no ringing state in memory.
func (l *MemoryLeg) Ringing() error { return l.Err() }

// Answer marks the call answered.
func (l *MemoryLeg) Answer(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.answered = true
	return nil
}

// Answered reports whether the server answered.
func (l *MemoryLeg) Answered() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answered
}

// Reject ends an unanswered call.
func (l *MemoryLeg) Reject(code int, reason string) error {
	l.end(ErrMemoryLocalHangup)
	return nil
}

// Hangup ends the call from the server's side.
func (l *MemoryLeg) Hangup(ctx context.Context) error {
	l.end(ErrMemoryLocalHangup)
	return nil
}

// Endpoint is the server side's media stream.
func (l *MemoryLeg) Endpoint() *media.Endpoint { return l.ep }

// Done is closed when the call has ended.
func (l *MemoryLeg) Done() <-chan struct{} { return l.done }

// Err says why the call ended (nil while it is up).
func (l *MemoryLeg) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// OnChat sets the callback for chat from the phone (PhoneChat).
func (l *MemoryLeg) OnChat(fn func(contentType, text string)) {
	l.mu.Lock()
	l.onChat = fn
	l.mu.Unlock()
}

// SendChat delivers text to the phone (Chats).
func (l *MemoryLeg) SendChat(ctx context.Context, text string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	l.chats = append(l.chats, text)
	if fn := l.toPhone; fn != nil {
		go fn("text/plain", text)
	}
	return nil
}

// PhoneChat sends text from the phone to the server.
func (l *MemoryLeg) PhoneChat(text string) {
	l.mu.Lock()
	fn := l.onChat
	l.mu.Unlock()
	if fn != nil {
		fn("text/plain", text)
	}
}

// Chats returns what the server sent the phone.
func (l *MemoryLeg) Chats() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.chats...)
}

// end closes both sides once: media first, then Done.
func (l *MemoryLeg) end(cause error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	l.err = cause
	l.mu.Unlock()
	_ = l.ep.Close()
	_ = l.phoneEP.Close()
	for _, k := range l.links {
		k.Close()
	}
	close(l.done)
}

// memoryPhone is the phone's side of a MemoryLeg, for PhoneCall.
type memoryPhone struct{ l *MemoryLeg }

func (p memoryPhone) Endpoint() *media.Endpoint { return p.l.phoneEP }
func (p memoryPhone) Hangup(ctx context.Context) error {
	p.l.end(ErrMemoryRemoteHangup)
	return nil
}
func (p memoryPhone) Done() <-chan struct{} { return p.l.done }
func (p memoryPhone) Err() error            { return p.l.Err() }
func (p memoryPhone) OnChat(fn func(contentType, text string)) {
	p.l.mu.Lock()
	p.l.toPhone = fn
	p.l.mu.Unlock()
}
