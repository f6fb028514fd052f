package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

// localNode is a Node around srv that is not in a cluster: requests to
// itself are answered in place, which is enough for the event feed.
func localNode(t *testing.T, srv *framework.Server) *Node {
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{srv: srv, opts: Options{Node: "n1", RequestTimeout: time.Second}, log: slog.New(slog.DiscardHandler),
		self: "127.0.0.1:1", ctx: ctx, cancel: cancel, members: map[string]*Member{"127.0.0.1:1": {Node: "n1", Addr: "127.0.0.1:1", Self: true}},
		records: map[string]*record{}}
	n.wg.Add(1)
	go n.watchCalls(srv.Subscribe(ctx, framework.FromNow)) // keeps ended calls' events readable
	t.Cleanup(func() {
		cancel()
		n.wg.Wait()
	})
	return n
}

// The feed hands out a call's events in order, each once, across batches
// (more events than one batch holds); resumes after any Seq; and, from a
// Seq the owner no longer keeps, gives the overflow marker first and goes
// on from the oldest kept. The stream ends with call.ended, then EOF.
func TestEventFeedOrderResumeAndOverflow(t *testing.T) {
	const signals = 600
	ready := make(chan string, 1)
	srv := startServer(t, framework.Config{EventReplay: 1000}, signalsFlow(signals, ready))
	n := localNode(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	phone := newPhone(t, 46000, 46999)
	pc, err := phone.Call(ctx, "sip:x@"+srv.SIPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	id := <-ready

	feed := n.Events(id, 0)
	var all []Event
	for {
		ev, err := feed.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != uint64(len(all)+1) || feed.Seq() != ev.Seq || ev.Node != "n1" || ev.CallID != id {
			t.Fatalf("event %d: %+v (feed at %d)", len(all)+1, ev, feed.Seq())
		}
		all = append(all, ev)
		if ev.Type == framework.EventSignal {
			var d framework.SignalData
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatalf("signal data %s: %v", ev.Data, err)
			}
			if string(d.Payload) == "599" {
				break
			}
		}
	}
	if len(all) < signals {
		t.Fatalf("%d events, want at least %d signals", len(all), signals)
	}

	// Resume after event 300: exactly 301 onwards.
	resumed := n.Events(id, 300)
	for want := uint64(301); want <= uint64(len(all)); want++ {
		ev, err := resumed.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != want || string(ev.Data) != string(all[want-1].Data) {
			t.Fatalf("resumed: got Seq %d %s, want %d %s", ev.Seq, ev.Data, want, all[want-1].Data)
		}
	}

	// The end of the call ends the feed, with call.ended even when the
	// call is gone from the server before the feed asks again.
	_ = pc.Hangup(ctx)
	waitFor(t, 5*time.Second, "the call to end", func() bool { return srv.Call(id) == nil })
	var last Event
	for {
		ev, err := resumed.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after the hang-up: %v", err)
		}
		last = ev
	}
	if last.Type != framework.EventCallEnded {
		t.Errorf("the last event is %s, want call.ended", last.Type)
	}
	if _, err := n.Events("no-such-call", 0).Next(ctx); !errors.Is(err, ErrCallNotFound) {
		t.Errorf("a call nobody has: %v, want ErrCallNotFound", err)
	}
}

// From a Seq older than the owner's ring, the feed starts with the
// owner's overflow marker and goes on after it.
func TestEventFeedOverflow(t *testing.T) {
	ready := make(chan string, 1)
	srv := startServer(t, framework.Config{EventReplay: 64}, signalsFlow(300, ready))
	n := localNode(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	phone := newPhone(t, 46000, 46999)
	pc, err := phone.Call(ctx, "sip:x@"+srv.SIPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	id := <-ready
	feed := n.Events(id, 10)
	ev, err := feed.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	od, ok := overflowOf(ev)
	if !ok || od.From != 11 || feed.Seq() != od.To {
		t.Fatalf("first event from Seq 10: %+v (feed at %d), want an overflow marker from 11", ev, feed.Seq())
	}
	next, err := feed.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq != od.To+1 {
		t.Errorf("after the marker: Seq %d, want %d", next.Seq, od.To+1)
	}
}

// signalsFlow answers, publishes n signals "n" (0..n-1), sends the call's
// ID to ready and holds the call until it ends.
func signalsFlow(n int, ready chan<- string) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		for i := range n {
			if err := c.Signal(ctx, "n", i); err != nil {
				return err
			}
		}
		ready <- c.ID()
		<-ctx.Done()
		return nil
	}
}
