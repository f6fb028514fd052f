package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/testharness"
)

// These tests drive the call actor with legs carried in memory (no RTP
// socket, no port): the framework above media never sees a transport.

func codecNamed(t *testing.T, name string) codec.CodecSpec {
	t.Helper()
	c, ok := codec.LookupCodec(name, 8000)
	if !ok {
		t.Fatalf("no codec %s", name)
	}
	return c
}

// A flow answers an in-memory call, collects a digit and plays a tone.
func TestMemoryLegFlow(t *testing.T) {
	digits := make(chan string, 1)
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		d, err := c.CollectDigits(ctx, CollectOptions{FirstDigitTimeout: 10 * time.Second})
		digits <- d
		if err != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 5 * time.Second}))
	}))
	leg, phone := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "ivr", From: "sip:alice@memory"})
	srv.StartCall(leg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	testharness.WaitUntil(t, 5*time.Second, "the flow to answer", leg.Answered)
	if err := phone.SendDTMF("5"); err != nil {
		t.Fatal(err)
	}
	if d := <-digits; d != "5" {
		t.Fatalf("flow collected %q, want 5", d)
	}
	if _, err := phone.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("phone does not hear the tone: %v", err)
	}
	_ = phone.Hangup(ctx)
	testharness.WaitUntil(t, 5*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// A non-SIP leg (memory) is bridged to a SIP leg (a harness phone the flow
// dials): passthrough with the same codec, transcoding with another.
func TestMemoryLegBridgedToSIPPhone(t *testing.T) {
	for _, tc := range []struct{ name, memCodec string }{{"passthrough", "PCMU"}, {"transcoding", "PCMA"}} {
		t.Run(tc.name, func(t *testing.T) {
			sipPhone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 37000, RTPPortMax: 37999,
				Codecs: []codec.CodecSpec{codecNamed(t, "PCMU")}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer sipPhone.Close()
			srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
				return c.Dial(ctx, sipPhone.URI("bob"), DialOptions{Timeout: 10 * time.Second})
			}))
			h := testharness.New(t, srv)
			h.Own(sipPhone)
			leg, mem := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "bob", Codec: codecNamed(t, tc.memCodec)})
			srv.StartCall(leg)
			memCall := h.Adopt(mem, "the memory leg")
			memCall.ExpectTwoWayAudio(h.ExpectIncoming(sipPhone, "the SIP phone"), 440, 1000)
			legs := srv.Leg(leg.ID())
			if legs == nil || legs.Kind() != LegMemory {
				t.Fatalf("server leg for the memory call: %v", legs)
			}
			memCall.End()
			h.ExpectIdle()
		})
	}
}

// memDialer reaches "mem:NAME" targets with in-memory legs: a transport
// family other than SIP, registered with AddDialer.
type memDialer struct{ phones chan *testharness.PhoneCall }

func (d memDialer) Dial(ctx context.Context, target string, opts DialOptions) (Signaling, error) {
	name, ok := strings.CutPrefix(target, "mem:")
	if !ok {
		return nil, fmt.Errorf("memory dialer: %s: %w", target, ErrNotFound)
	}
	leg, phone := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: name, Outbound: true})
	d.phones <- phone
	return leg, nil
}

// Dial is transport-neutral: a flow on a SIP call dials a target that
// another transport family (here: memory) reaches, and the two are bridged.
func TestDialThroughAnotherTransport(t *testing.T) {
	d := memDialer{phones: make(chan *testharness.PhoneCall, 1)}
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		return c.Dial(ctx, "mem:bob", DialOptions{})
	}))
	srv.AddDialer(d)
	h := testharness.New(t, srv)
	call := h.Call("bob", testharness.HarnessCallOptions{Name: "the SIP caller",
		Phone: h.Phone(testharness.PhoneOptions{RTPPortMin: 37000, RTPPortMax: 37999})})
	bob := h.Adopt(testharness.Await(h, d.phones, "the memory leg to be dialled"), "the memory leg")
	call.ExpectTwoWayAudio(bob, 600, 1200)
	// bob hangs up; the flow's Dial returns and the server ends the SIP
	// caller's call (BYE). Hanging the caller up at the same moment would
	// cross the two BYEs: the server's, to a phone already gone, would
	// keep its client transaction (and socket) for Timer F's 32 s.
	bob.End()
	call.ExpectHangup()
	h.ExpectIdle()
}

// Under -race: many in-memory calls wait in rooms while Go code moves
// their legs at random between rooms and audio flows. Afterwards the legs
// are where the last move put them, every goroutine and room is gone,
// and no port was ever taken.
func TestRandomMovesBetweenRooms(t *testing.T) {
	calls, rooms, dur := 200, 20, 30*time.Second
	if testing.Short() {
		calls, dur = 40, 3*time.Second
	}
	before := runtime.NumGoroutine()
	pacer := media.NewPacer(0)
	defer pacer.Close()
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		// The caller leaves its call for the room: the leg lives on there.
		if err := c.Answer(ctx); err != nil {
			return err
		}
		return c.Server().Move(ctx, c.ID(), ToRoom(c.User()), JoinOptions{})
	}))
	base := srv.Ports().InUse()
	type member struct {
		leg   *testharness.MemoryLeg
		phone *testharness.PhoneCall
		room  string
	}
	var members []*member
	for i := range calls {
		room := fmt.Sprintf("room-%d", i%rooms)
		leg, phone := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: room, Pacer: pacer})
		phone.Play(audio.NewTone(audio.Tone{Freqs: []float64{float64(400 + 10*(i%rooms))}, Amplitude: 3000}))
		srv.StartCall(leg)
		members = append(members, &member{leg: leg, phone: phone, room: room})
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur+60*time.Second)
	defer cancel()
	testharness.WaitUntil(t, 20*time.Second, "every leg in its room", func() bool {
		for _, m := range members {
			l := srv.Leg(m.leg.ID())
			if l == nil || l.Where() != "room:"+m.room {
				return false
			}
		}
		return true
	})
	// Four movers, each owning a quarter of the legs, move them at
	// random until the time is up.
	var wg sync.WaitGroup
	var mu sync.Mutex
	moves, end := 0, time.Now().Add(dur)
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			mine := members[w*len(members)/4 : (w+1)*len(members)/4]
			for time.Now().Before(end) && ctx.Err() == nil {
				m := mine[rng.IntN(len(mine))]
				to := fmt.Sprintf("room-%d", rng.IntN(rooms))
				if err := srv.Move(ctx, m.leg.ID(), ToRoom(to), JoinOptions{}); err != nil {
					errs <- fmt.Errorf("move %s to %s: %w", m.leg.ID(), to, err)
					return
				}
				m.room = to
				mu.Lock()
				moves++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d moves of %d legs between %d rooms in %s", moves, calls, rooms, dur)
	// Audio still flows where the legs ended up: a room member hears
	// another member's tone.
	var probe *member
	for _, m := range members {
		for _, o := range members {
			if o != m && o.room == m.room {
				probe = m
			}
		}
	}
	if probe != nil {
		if _, err := probe.phone.WaitSound(ctx); err != nil {
			t.Errorf("a leg in %s hears nothing after the moves: %v", probe.room, err)
		}
	}
	for _, m := range members {
		l := srv.Leg(m.leg.ID())
		if l == nil || l.Where() != "room:"+m.room {
			where := ""
			if l != nil {
				where = l.Where()
			}
			t.Fatalf("leg %s is at %q, the last move put it in room:%s", m.leg.ID(), where, m.room)
		}
	}
	for _, m := range members {
		_ = m.phone.Hangup(ctx)
	}
	testharness.WaitUntil(t, 10*time.Second, "every leg to end", func() bool { return srv.LiveLegs() == 0 })
	testharness.WaitUntil(t, 10*time.Second, "every room to close", func() bool { return len(srv.Rooms()) == 0 })
	testharness.WaitUntil(t, 10*time.Second, "no reply waiter and no live object left", func() bool {
		return srv.inbox.pending() == 0 && srv.objs.count() == 0
	})
	if n := srv.Ports().InUse(); n != base {
		t.Errorf("ports in use: %d, want %d", n, base)
	}
	pacer.Close()
	testharness.WaitUntil(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= before+20 // the running server's own
	})
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the test ran out of time")
	}
}
