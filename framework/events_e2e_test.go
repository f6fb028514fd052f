package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// startTestServer runs a server on loopback (ephemeral SIP port; no HTTP
// unless cfg.HTTPAddr asks for it).
func startTestServer(t *testing.T, cfg Config, h Handler) *Server {
	t.Helper()
	cfg.SIPAddr = "127.0.0.1:0"
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "-"
	}
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 31000, 31999
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	testharness.Serve(t, srv)
	return srv
}

// short describes an event for comparing streams.
func short(ev Event) string {
	return fmt.Sprintf("%d %s %s %v", ev.Seq, ev.Type, ev.LegID, ev.Data)
}

// Done means (a): the flow (Events), a second subscriber (the server-wide
// stream) and a third one that drops and resumes all see one ordered
// stream with ringing, answer, hold and unhold, the phone's chat (SIP
// MESSAGE) and signal (SIP INFO), a presence change (internal hook) and
// the application's signal and chat; the phone receives the
// application's chat as a MESSAGE.
func TestSessionEventsOneOrderedStream(t *testing.T) {
	type flowResult struct {
		events []Event
		callID string
		err    error
	}
	flowDone := make(chan flowResult, 1)
	answered := make(chan struct{})
	sent := make(chan struct{})      // the flow's SendMessage returned
	published := make(chan struct{}) // the flow published its presence and signal
	var callRef sync.Map             // the Call, for the resume check after the call
	early := make(chan error, 1)     // what ended the flow before it answered
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		callRef.Store("call", c)
		events := c.Events()
		for _, step := range []struct {
			name string
			do   func(context.Context) error
		}{{"ring", c.Ring}, {"answer", c.Answer}, {"hold", c.Hold}, {"unhold", c.Unhold}} {
			if err := step.do(ctx); err != nil {
				early <- fmt.Errorf("%s: %w", step.name, err)
				return err
			}
		}
		close(answered)
		var seen []Event
		next := func(want EventType) error {
			for {
				select {
				case ev, ok := <-events:
					if !ok {
						return errors.New("stream ended")
					}
					seen = append(seen, ev)
					if ev.Type == want && ev.LegID != "" {
						return nil
					}
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		res := flowResult{callID: c.ID()}
		defer func() { flowDone <- res }()
		if res.err = next(EventChat); res.err != nil { // the phone's MESSAGE
			return res.err
		}
		if res.err = c.publish(ctx, "", EventPresence, PresenceData{User: "alice", Status: "busy"}); res.err != nil {
			return res.err
		}
		if res.err = c.Signal(ctx, "score", map[string]int{"home": 2, "away": 1}); res.err != nil {
			return res.err
		}
		close(published)                                 // the phone's INFO comes after this, so the order is known
		if res.err = next(EventSignal); res.err != nil { // the phone's INFO
			return res.err
		}
		res.err = c.SendMessage(ctx, "thanks, bye")
		close(sent)
		if res.err != nil {
			return res.err
		}
		// Read on to the end of the stream: the phone hangs up.
		for ev := range events {
			seen = append(seen, ev)
		}
		res.events = seen
		return nil
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := srv.Subscribe(ctx, FromNow)
	defer all.Close()

	h := testharness.New(t, srv)
	call := h.Call("events", testharness.HarnessCallOptions{Phone: h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})})
	chats := make(chan string, 4)
	call.Leg.OnChat(func(_, text string) { chats <- text })
	select { // so that leg.answered comes before the chat
	case <-answered:
	case err := <-early:
		t.Fatalf("the flow ended before the chat: %v", err)
	case <-ctx.Done():
		t.Fatal("flow did not answer")
	}
	if err := call.Leg.SendChat(ctx, "hello from the phone"); err != nil {
		t.Fatalf("MESSAGE: %v", err)
	}
	select {
	case <-published:
	case <-ctx.Done():
		t.Fatal("the flow did not publish")
	}
	if err := call.Leg.SendSignal(ctx, "hand-raised", json.RawMessage(`{"raised": true}`)); err != nil {
		t.Fatalf("INFO signal: %v", err)
	}
	select {
	case text := <-chats:
		if text != "thanks, bye" {
			t.Fatalf("phone got chat %q", text)
		}
	case <-ctx.Done():
		t.Fatal("the phone never received the application's chat")
	}
	select { // the phone's 200 has reached the flow
	case <-sent:
	case <-ctx.Done():
		t.Fatal("SendMessage did not return")
	}
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	var res flowResult
	select {
	case res = <-flowDone:
	case <-ctx.Done():
		t.Fatal("flow did not finish")
	}
	if res.err != nil {
		t.Fatalf("flow: %v", res.err)
	}

	// What the flow saw: the whole stream, gap-free from 1, in this order.
	var kinds []string
	for i, ev := range res.events {
		if ev.Seq != uint64(i+1) || ev.CallID != res.callID {
			t.Fatalf("flow event %d: %s (call %s)", i, short(ev), ev.CallID)
		}
		if ev.Type != EventPlayStarted && ev.Type != EventPlayFinished {
			kinds = append(kinds, fmt.Sprintf("%s/%t", ev.Type, ev.LegID != ""))
		}
	}
	want := []string{"call.started/false", "leg.ringing/true", "leg.answered/true", "leg.held/true", "leg.unheld/true", "chat/true", "presence/false", "signal/false",
		"signal/true", "chat/false", "leg.ended/true", "call.ended/false"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("flow saw %v\nwant %v", kinds, want)
	}
	byType := map[EventType][]Event{}
	for _, ev := range res.events {
		byType[ev.Type] = append(byType[ev.Type], ev)
	}
	if d := byType[EventChat][0].Data.(ChatData); d.Text != "hello from the phone" {
		t.Errorf("phone chat %+v", d)
	}
	if d := byType[EventSignal][0].Data.(SignalData); d.Name != "score" || string(d.Payload) != `{"away":1,"home":2}` {
		t.Errorf("app signal %s %s", d.Name, d.Payload)
	}
	if d := byType[EventSignal][1].Data.(SignalData); d.Name != "hand-raised" || string(d.Payload) != `{"raised":true}` {
		t.Errorf("phone signal %s %s", d.Name, d.Payload)
	}
	if d := byType[EventPresence][0].Data.(PresenceData); d.User != "alice" || d.Status != "busy" {
		t.Errorf("presence %+v", d)
	}

	// The server-wide subscriber saw the same events in the same order,
	// each with its session Seq, numbered by ServerSeq without gaps.
	var fromServer []Event
	var lastServer uint64
	for len(fromServer) < len(res.events) {
		ev, err := all.Next(ctx)
		if err != nil {
			t.Fatalf("server stream after %d events: %v", len(fromServer), err)
		}
		if lastServer != 0 && ev.ServerSeq != lastServer+1 {
			t.Fatalf("server stream: ServerSeq %d after %d", ev.ServerSeq, lastServer)
		}
		lastServer = ev.ServerSeq
		if ev.CallID == res.callID {
			fromServer = append(fromServer, ev)
		}
	}
	for i := range res.events {
		if short(fromServer[i]) != short(res.events[i]) {
			t.Fatalf("server stream event %d: %s, flow saw %s", i, short(fromServer[i]), short(res.events[i]))
		}
	}

	// A subscriber that dropped after event 3 resumes from 3: every later
	// event once, in order (the ended call's stream is still readable).
	v, _ := callRef.Load("call")
	sub := v.(*Call).Subscribe(ctx, 3)
	defer sub.Close()
	for i := 3; ; i++ {
		ev, err := sub.Next(ctx)
		if errors.Is(err, io.EOF) {
			if i != len(res.events) {
				t.Fatalf("resumed stream ended after %d events, want %d", i, len(res.events))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if short(ev) != short(res.events[i]) {
			t.Fatalf("resumed event %s, want %s", short(ev), short(res.events[i]))
		}
	}
}

// Bad signals are refused before they reach the stream.
func TestCheckSignal(t *testing.T) {
	tests := []struct {
		name    string
		payload any
		want    string
		ok      bool
	}{
		{"n", nil, "", true},
		{"n", map[string]int{"a": 1}, `{"a":1}`, true},
		{"n", json.RawMessage(`{ "a" : [1, 2] }`), `{"a":[1,2]}`, true},
		{"n", []byte(`"text"`), `"text"`, true},
		{"", nil, "", false},
		{string(make([]byte, 65)), nil, "", false},
		{"n", json.RawMessage(`{"a":`), "", false},
		{"n", []byte("not json"), "", false},
		{"n", make([]byte, MaxSignalPayload+1), "", false},
		{"n", func() {}, "", false},
	}
	for _, tt := range tests {
		d, err := checkSignal(tt.name, tt.payload)
		if (err == nil) != tt.ok {
			t.Errorf("checkSignal(%q, %T): err %v, want ok=%v", tt.name, tt.payload, err, tt.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrBadSignal) {
			t.Errorf("error %v does not wrap ErrBadSignal", err)
		}
		if tt.ok && string(d.Payload) != tt.want {
			t.Errorf("payload %s, want %s", d.Payload, tt.want)
		}
	}
}

// A phone that puts the call on hold and takes it off (re-INVITE
// sendonly, then sendrecv) shows as leg.held and leg.unheld with
// Remote set.
func TestPeerHoldEvents(t *testing.T) {
	got := make(chan []Event, 1)
	srv := startTestServer(t, Config{}, HandlerFunc(func(ctx context.Context, c *Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		var holds []Event
		for ev := range c.Events() {
			if ev.Type == EventLegHeld || ev.Type == EventLegUnheld {
				holds = append(holds, ev)
				if len(holds) == 2 {
					break
				}
			}
		}
		got <- holds
		<-ctx.Done() // the phone hangs up
		return nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := testharness.New(t, srv)
	call := h.Call("hold", testharness.HarnessCallOptions{Phone: h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})})
	if err := call.Leg.Hold(ctx); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if err := call.Leg.Unhold(ctx); err != nil {
		t.Fatalf("unhold: %v", err)
	}
	holds := testharness.Await(h, got, "the flow to see the hold and the unhold")
	call.End()
	if holds[0].Type != EventLegHeld || holds[1].Type != EventLegUnheld || holds[0].LegID != call.Leg.ID() ||
		!holds[0].Data.(HoldData).Remote || !holds[1].Data.(HoldData).Remote {
		t.Fatalf("events %s, %s", short(holds[0]), short(holds[1]))
	}
}
