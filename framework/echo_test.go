package framework

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// slowAnswerLeg is an inbound leg carried in memory whose far end sends
// nothing, and whose Answer takes as long as a SIP leg's wait for the ACK
// of its 200; it reports the packets its stream sent meanwhile.
type slowAnswerLeg struct {
	ep, far *media.Endpoint
	wait    time.Duration
	during  chan uint64
	done    chan struct{}
	once    sync.Once
}

func (l *slowAnswerLeg) ID() string                             { return "slow-answer" }
func (l *slowAnswerLeg) Kind() string                           { return "memory" }
func (l *slowAnswerLeg) Inbound() bool                          { return true }
func (l *slowAnswerLeg) User() string                           { return "echo" }
func (l *slowAnswerLeg) From() string                           { return "sip:quiet@memory" }
func (l *slowAnswerLeg) To() string                             { return "echo" }
func (l *slowAnswerLeg) Ringing() error                         { return nil }
func (l *slowAnswerLeg) Reject(int, string) error               { l.end(); return nil }
func (l *slowAnswerLeg) Hangup(context.Context) error           { l.end(); return nil }
func (l *slowAnswerLeg) Endpoint() *media.Endpoint              { return l.ep }
func (l *slowAnswerLeg) Done() <-chan struct{}                  { return l.done }
func (l *slowAnswerLeg) Err() error                             { return nil }
func (l *slowAnswerLeg) OnChat(func(contentType, text string))  {}
func (l *slowAnswerLeg) SendChat(context.Context, string) error { return nil }
func (l *slowAnswerLeg) end()                                   { l.once.Do(func() { close(l.done); l.ep.Close(); l.far.Close() }) }
func (l *slowAnswerLeg) Answer(ctx context.Context) error {
	before := l.ep.Stats().PacketsOut
	time.Sleep(l.wait)
	l.during <- l.ep.Stats().PacketsOut - before
	return nil
}

// Echo reflects from before its answer: while the answer waits (a SIP
// leg waits for the ACK), a leg whose caller is silent sends nothing.
// Answered first, it sent silence until the echo began: a packet every
// 20 ms.
func TestEchoSendsNothingWhileAnswering(t *testing.T) {
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error { return c.Echo(ctx) }))
	spec, _ := codec.LookupCodec("PCMU", 8000)
	ep, far, _ := media.NewMemoryPair(media.EndpointOptions{MediaTimeout: -1})
	ep.Configure(media.StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101})
	ep.Start() // the far end never starts: it sends nothing
	leg := &slowAnswerLeg{ep: ep, far: far, wait: 300 * time.Millisecond, during: make(chan uint64, 1), done: make(chan struct{})}
	defer leg.end()
	srv.StartCall(leg)
	select {
	case n := <-leg.during:
		if n > 1 { // a tick already under way when the reflection was set
			t.Fatalf("the leg sent %d packets while its answer waited 300 ms, want none (it reflects)", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flow never answered")
	}
}
