package framework

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func appendN(l *EventLog, n int) {
	for range n {
		l.Append(Event{CallID: "c", Type: EventDTMF})
	}
}

// collect reads from s until it has n events or markers, failing after 5 s.
func collect(t *testing.T, s *Subscription, n int) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []Event
	for len(out) < n {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		out = append(out, ev)
	}
	return out
}

func TestEventLogSubscribeFrom(t *testing.T) {
	tests := []struct {
		name      string
		replay    int
		published int
		from      uint64
		wantFirst uint64 // first Seq delivered after any marker
		marker    *OverflowData
	}{
		{"from start", 16, 10, 0, 1, nil},
		{"resume mid-stream", 16, 10, 4, 5, nil},
		{"resume at the end", 16, 10, 10, 11, nil},
		{"from beyond the end", 16, 10, 99, 11, nil},
		{"from now", 16, 10, FromNow, 11, nil},
		// 11 events in a ring of 4 keep 8..11.
		{"start evicted", 4, 10, 0, 8, &OverflowData{From: 1, To: 7}},
		{"resume evicted", 4, 10, 3, 8, &OverflowData{From: 4, To: 7}},
		{"resume at oldest kept", 4, 10, 7, 8, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewEventLog("c", tt.replay)
			appendN(l, tt.published)
			s := l.Subscribe(context.Background(), tt.from)
			defer s.Close()
			l.Append(Event{Type: EventChat}) // one more, so every case has something to read
			var got []Event
			if tt.marker != nil {
				got = collect(t, s, 1)
				if got[0].Type != EventOverflow || got[0].Seq != 0 || got[0].Data.(OverflowData) != *tt.marker {
					t.Fatalf("marker = %+v, want overflow %+v", got[0], *tt.marker)
				}
			}
			want := uint64(tt.published+1) - tt.wantFirst + 1
			evs := collect(t, s, int(want))
			for i, ev := range evs {
				if ev.Seq != tt.wantFirst+uint64(i) {
					t.Fatalf("event %d has seq %d, want %d", i, ev.Seq, tt.wantFirst+uint64(i))
				}
			}
			if _, ok := s.tryNext(); ok {
				t.Fatal("more events than were published")
			}
		})
	}
}

// A subscriber that drops and resumes from the last Seq it saw receives
// every later event exactly once, while the producer keeps publishing.
func TestEventLogResumeExactlyOnce(t *testing.T) {
	l := NewEventLog("c", 1024)
	const total = 600
	go func() {
		for range total {
			l.Append(Event{Type: EventSignal})
		}
	}()
	seen := map[uint64]int{}
	var last uint64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := 0; last < total; round++ {
		s := l.Subscribe(ctx, last)
		for range 37 { // drop after a few events each time
			ev, err := s.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == EventOverflow {
				t.Fatalf("overflow although the ring holds everything: %+v", ev.Data)
			}
			if ev.Seq != last+1 {
				t.Fatalf("round %d: got seq %d after %d", round, ev.Seq, last)
			}
			seen[ev.Seq]++
			last = ev.Seq
			if last == total {
				break
			}
		}
		s.Close()
	}
	for seq := uint64(1); seq <= total; seq++ {
		if seen[seq] != 1 {
			t.Fatalf("seq %d seen %d times", seq, seen[seq])
		}
	}
}

// A subscriber that stops reading never blocks the producer; when it reads
// again it gets one overflow marker for what it lost, then the rest in
// order, and may resume the lost part from a log that still has it.
func TestEventLogSlowSubscriberOverflow(t *testing.T) {
	l := NewEventLog("call-1", 8)
	slow := l.Subscribe(context.Background(), 0)
	defer slow.Close()
	appendN(l, 3)
	if got := collect(t, slow, 2); got[1].Seq != 2 {
		t.Fatalf("got %+v", got)
	}
	done := make(chan struct{})
	go func() { appendN(l, 20); close(done) }() // 23 events, ring of 8
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("producer blocked by a subscriber that does not read")
	}
	got := collect(t, slow, 1+8)
	m := got[0]
	if m.Type != EventOverflow || m.CallID != "call-1" {
		t.Fatalf("first = %+v, want an overflow marker", m)
	}
	if d := m.Data.(OverflowData); d.From != 3 || d.To != 15 {
		t.Fatalf("missed %d..%d, want 3..15", d.From, d.To)
	}
	for i, ev := range got[1:] {
		if ev.Seq != uint64(16+i) {
			t.Fatalf("after the marker: seq %d, want %d", ev.Seq, 16+i)
		}
	}
}

func TestEventLogCloseEndsSubscribers(t *testing.T) {
	l := NewEventLog("c", 0)
	s := l.Subscribe(context.Background(), 0)
	ch := s.C()
	l.Append(Event{Type: EventCallStarted})
	l.Append(Event{Type: EventCallEnded})
	l.Close()
	var types []EventType
	for ev := range ch {
		types = append(types, ev.Type)
	}
	if len(types) != 2 || types[1] != EventCallEnded || !errors.Is(s.Err(), io.EOF) {
		t.Fatalf("got %v, err %v", types, s.Err())
	}
	if ev := l.Append(Event{Type: EventChat}); ev.Seq != 0 {
		t.Fatal("append after close stored an event")
	}
}

// Subscriptions that are closed, or whose ctx ends, leave no goroutine.
func TestSubscriptionCloseLeavesNoGoroutine(t *testing.T) {
	l := NewEventLog("c", 0)
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	var subs []*Subscription
	for i := range 50 {
		c := context.Background()
		if i%2 == 0 {
			c = ctx
		}
		s := l.Subscribe(c, 0)
		_ = s.C()
		subs = append(subs, s)
	}
	l.Append(Event{Type: EventChat}) // each pump now waits to hand it over
	cancel()
	for i, s := range subs {
		if i%2 == 1 {
			s.Close()
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines, %d before", n, before)
	}
}

// Many subscribers and one producer under -race: every subscriber sees the
// same gap-free order.
func TestEventLogConcurrentSubscribers(t *testing.T) {
	l := NewEventLog("c", 4096)
	const total = 2000
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		s := l.Subscribe(context.Background(), 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			var last uint64
			for {
				ev, err := s.Next(context.Background())
				if errors.Is(err, io.EOF) {
					if last != total {
						errs <- errors.New("ended early")
					}
					return
				}
				if err != nil || ev.Seq != last+1 {
					errs <- errors.New("out of order")
					return
				}
				last = ev.Seq
			}
		}()
	}
	for range total {
		l.Append(Event{Type: EventDTMF})
	}
	l.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Events marshal with their type as the dotted name and signal payloads
// inline.
func TestEventJSON(t *testing.T) {
	ev := Event{Seq: 3, CallID: "c1", LegID: "l1", Type: EventSignal,
		Data: SignalData{Name: "score", Payload: json.RawMessage(`{"home":2}`)}}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `"type":"signal","data":{"name":"score","payload":{"home":2}}`
	if !strings.Contains(string(b), want) || !strings.Contains(string(b), `"seq":3`) {
		t.Fatalf("%s\nwant it to contain %s", b, want)
	}
	if EventLegAnswered.String() != "leg.answered" {
		t.Fatal(EventLegAnswered.String())
	}
}

func BenchmarkEventLogAppend(b *testing.B) {
	l := NewEventLog("c", 0)
	s := l.Subscribe(context.Background(), 0)
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Append(Event{Type: EventDTMF})
	}
}
