package framework

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// A call is controlled by ID from outside its flow: srv.Call(id) sends
// plain messages to the call's actor. Its Legs, Signal and Hangup work;
// the flow, waiting in Play, sees the hangup; afterwards the ID finds
// nothing, and no reply waiter or live object is left behind.
func TestCallAddressableByID(t *testing.T) {
	playing := make(chan string, 1)
	flowErr := make(chan error, 1)
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		playing <- c.ID()
		err := c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{700}, Duration: time.Minute}))
		flowErr <- err
		return err
	}))
	leg, phone := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "held", From: "sip:alice@memory"})
	srv.StartCall(leg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var id string
	select {
	case id = <-playing:
	case <-ctx.Done():
		t.Fatal("the flow did not start playing")
	}
	if _, err := phone.WaitTone(ctx, 700, 20); err != nil {
		t.Fatalf("phone does not hear the flow's tone: %v", err)
	}
	c := srv.Call(id)
	if c == nil {
		t.Fatalf("srv.Call(%q) found no call", id)
	}
	legs, err := c.Legs(ctx)
	if err != nil || len(legs) != 1 || legs[0].ID() != leg.ID() {
		t.Fatalf("Legs by ID = %v, %v; want the caller %s", legs, err, leg.ID())
	}
	sub := c.Subscribe(ctx, FromNow)
	defer sub.Close()
	if err := c.Signal(ctx, "from-outside", map[string]int{"n": 1}); err != nil {
		t.Fatalf("Signal by ID: %v", err)
	}
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("no signal event: %v", err)
		}
		if ev.Type == EventSignal {
			if d, ok := ev.Data.(SignalData); !ok || d.Name != "from-outside" || string(d.Payload) != `{"n":1}` {
				t.Fatalf("signal event %+v", ev.Data)
			}
			break
		}
	}
	if err := c.Hangup(ctx); err != nil {
		t.Fatalf("Hangup by ID: %v", err)
	}
	select {
	case err := <-flowErr:
		if !errors.Is(err, ErrHangup) {
			t.Fatalf("the flow's Play returned %v, want ErrHangup", err)
		}
	case <-ctx.Done():
		t.Fatal("the flow's Play did not return after Hangup by ID")
	}
	select {
	case <-leg.Done():
	case <-ctx.Done():
		t.Fatal("the leg was not hung up")
	}
	testharness.WaitUntil(t, 5*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
	if srv.Call(id) != nil {
		t.Fatalf("srv.Call(%q) still finds the ended call", id)
	}
	testharness.WaitUntil(t, 5*time.Second, "no waiter and no live object left", func() bool {
		return srv.inbox.pending() == 0 && srv.objs.count() == 0 && srv.LiveLegs() == 0
	})
}

// BenchmarkVerbRoundTrip measures one Call verb as messages: Hold on an
// in-memory leg, which cannot be held, so the call actor answers at once
// (Call → call actor → reply inbox → the waiting goroutine).
func BenchmarkVerbRoundTrip(b *testing.B) {
	ready := make(chan *Call, 1)
	srv, err := NewServer(Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "-", RTPPortMin: 31000, RTPPortMax: 31999,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, HandlerFunc(func(ctx context.Context, c *Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		ready <- c
		<-ctx.Done()
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = srv.ListenAndServe(sctx) }()
	<-srv.Ready()
	leg, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "bench", From: "sip:bench@memory"})
	srv.StartCall(leg)
	c := <-ready
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.Hold(ctx); err == nil {
			b.Fatal("a memory leg was held")
		}
	}
	b.StopTimer()
	_ = c.Hangup(ctx)
}

// A room is controlled by name: a caller Joins "desk", the room's handle
// lists it and kicks it, and the flow's Join returns ErrKicked.
func TestRoomAddressableByName(t *testing.T) {
	joined := make(chan error, 1)
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		err := c.Join(ctx, "desk", JoinOptions{})
		joined <- err
		return err
	}))
	leg, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "desk", From: "sip:bob@memory"})
	srv.StartCall(leg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	room := srv.Room("desk")
	var members []LegInfo
	testharness.WaitUntil(t, 5*time.Second, "the caller in the room", func() bool {
		var err error
		members, err = room.Members(ctx)
		return err == nil && len(members) == 1
	})
	if members[0].ID != leg.ID() || members[0].State != LegAnswered {
		t.Fatalf("room members %+v, want the caller %s answered", members, leg.ID())
	}
	if err := room.Kick(ctx, leg.ID()); err != nil {
		t.Fatalf("Kick by room name: %v", err)
	}
	select {
	case err := <-joined:
		if !errors.Is(err, ErrKicked) {
			t.Fatalf("Join returned %v, want ErrKicked", err)
		}
	case <-ctx.Done():
		t.Fatal("Join did not return after the kick")
	}
	testharness.WaitUntil(t, 5*time.Second, "the call to end and the room to close", func() bool {
		return srv.ActiveCalls() == 0 && len(srv.Rooms()) == 0
	})
}

// A message whose call has gone is cleaned up: the leg it handed over is
// hung up and forgotten, the Source it named is dropped, and the waiting
// requester hears ErrHangup at once instead of waiting for its ctx.
func TestUndeliverableMessagesCleanUp(t *testing.T) {
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error { return nil }))
	gone := actor.NewPID(srv.system.Address(), "no-such-call")

	leg, _ := testharness.NewMemoryCall(testharness.MemoryCallOptions{User: "late", From: "sip:carol@memory"})
	id := srv.legReg.add(leg).id
	srv.root.Send(gone, &dialResult{DialID: 1, LegID: id})
	select {
	case <-leg.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a dialled leg whose call had gone was not hung up")
	}
	if srv.LiveLegs() != 0 {
		t.Fatalf("%d legs still registered", srv.LiveLegs())
	}

	p := &playReq{SourceID: srv.objs.put(media.Silence(time.Second))}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	r, err := srv.ask(ctx, gone, p)
	if err != nil {
		t.Fatalf("no reply from a call that had gone: %v", err)
	}
	if !errors.Is(r.Err.Err(), ErrHangup) {
		t.Fatalf("reply %v, want ErrHangup", r.Err.Err())
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the reply took %s", d)
	}
	if n := srv.objs.count(); n != 0 {
		t.Fatalf("%d objects left in the table", n)
	}
}
