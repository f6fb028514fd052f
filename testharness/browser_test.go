package testharness_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The virtual browser (pion, the /ws protocol; no Chromium) calls a route
// and hears it, and is called through a flow by a SIP phone: audio both
// ways.
func TestVirtualBrowser(t *testing.T) {
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	r.HandleFunc("alice", func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
	})
	srv := startBrowserServer(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	b, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), srv.Tokens().MintFor("alice", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.User() != "alice" {
		t.Fatalf("logged in as %q", b.User())
	}
	call, err := b.Call(ctx, "tone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("the browser does not hear the tone route: %v", err)
	}
	// An ICE restart (new credentials, a new offer over /ws) keeps the audio.
	if err := b.RestartICE(ctx, call); err != nil {
		t.Fatalf("ICE restart: %v", err)
	}
	time.Sleep(time.Second)
	if l, ok := call.Analyse(500 * time.Millisecond); !ok || l.Frequency < 980 || l.Frequency > 1020 || l.RMS < 300 {
		t.Fatalf("after the ICE restart the browser hears %+v", l)
	}
	_ = call.Hangup(ctx)
	testharness.WaitUntil(t, 5*time.Second, "the tone call to end", func() bool { return srv.ActiveCalls() == 0 })

	h := testharness.New(t, srv)
	pcall := h.Call("alice", testharness.HarnessCallOptions{Name: "the phone's call to alice",
		Phone: h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})})
	pcall.ExpectTwoWayAudio(h.ExpectIncoming(b, "the browser"), 700, 1300)
	pcall.End()
	h.ExpectIdle()

	// A bad token is refused with a clear error.
	if _, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), "nope"); err == nil {
		t.Fatal("a bad token logged in")
	}
}

// What a browser does to its call reaches the call's event stream — mute,
// hold, a custom signal — and its login and its own status reach
// presence.
func TestVirtualBrowserControlsAndPresence(t *testing.T) {
	events := make(chan framework.Event, 256)
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0",
		Browsers: &framework.BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"},
		OnEvent: func(ev framework.Event) {
			select {
			case events <- ev:
			default:
			}
		}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 30 * time.Second}))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := testharness.NewBrowser(ctx, srv.HTTPAddr(), srv.Tokens().MintFor("carol", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	testharness.WaitUntil(t, 5*time.Second, "carol online", func() bool {
		p, ok := srv.Presence().Get("carol")
		return ok && p.Status == framework.PresenceAvailable
	})
	call, err := b.Call(ctx, "tone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatal(err)
	}
	want := func(typ framework.EventType, check func(framework.Event) bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.Type == typ && (check == nil || check(ev)) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s event", typ)
			}
		}
	}
	for _, step := range []struct {
		msg  bridge.Message
		want framework.EventType
	}{
		{bridge.Message{Type: "mute"}, framework.EventLegMuted},
		{bridge.Message{Type: "unmute"}, framework.EventLegUnmuted},
		{bridge.Message{Type: "hold"}, framework.EventLegHeld},
		{bridge.Message{Type: "unhold"}, framework.EventLegUnheld},
	} {
		if err := b.Send(call, step.msg); err != nil {
			t.Fatal(err)
		}
		want(step.want, nil)
	}
	if err := b.Send(call, bridge.Message{Type: "signal", Text: "raise-hand", Event: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	want(framework.EventSignal, func(ev framework.Event) bool {
		d, ok := ev.Data.(framework.SignalData)
		return ok && d.Name == "raise-hand" && string(d.Payload) == `{"n":1}`
	})
	if err := b.SetPresence("away", "lunch"); err != nil {
		t.Fatal(err)
	}
	testharness.WaitUntil(t, 5*time.Second, "carol away", func() bool {
		p, _ := srv.Presence().Get("carol")
		return p.Status == framework.PresenceAway && p.Note == "lunch"
	})
	_ = call.Hangup(ctx)
	b.Close()
	testharness.WaitUntil(t, 5*time.Second, "carol offline after her browser closed", func() bool {
		p, _ := srv.Presence().Get("carol")
		return p.Status == framework.PresenceOffline
	})
}

// The virtual browser answers the server's heartbeat pings (a socket
// that does not is closed after three), also more than 5 s after its last
// message (whose write deadline once made every later pong fail): with a
// 50 ms heartbeat, 6 s later the socket is up and answers a ping.
func TestVirtualBrowserAnswersHeartbeats(t *testing.T) {
	tok, err := bridge.NewTokens([]byte("test key of sixteen bytes or more"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(bridge.Config{Tokens: tok, ICEAddr: "127.0.0.1:0", Heartbeat: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	defer func() { srv.Close(); _ = b.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	br, err := testharness.DialBrowser(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), tok.MintFor("alice", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if err := br.SetPresence("available", "typing"); err != nil { // a write that sets a write deadline
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second)
	if err := br.Ping(ctx); err != nil {
		t.Fatalf("after 6 s of heartbeats: %v", err)
	}
}
