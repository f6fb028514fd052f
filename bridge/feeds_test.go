package bridge

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

func TestValidSession(t *testing.T) {
	for _, tc := range []struct {
		id    string
		empty bool
		want  bool
	}{
		{"room:sales", false, true},
		{"wr-5d1c", false, true},
		{"3f695249-069e-42ba-9147-75826d22e75d", false, true},
		{"room:café", false, true},
		{"", false, false},
		{"", true, true},
		{"room:a b", false, false},
		{"room:a\nb", false, false},
		{"room:\x00", false, false},
		{"\xff\xfe", false, false},
		{strings.Repeat("x", MaxSessionID), false, true},
		{strings.Repeat("x", MaxSessionID+1), false, false},
	} {
		if got := validSession(tc.id, tc.empty); got != tc.want {
			t.Errorf("validSession(%.20q, %v) = %v, want %v", tc.id, tc.empty, got, tc.want)
		}
	}
}

func TestClaimsMayWatch(t *testing.T) {
	for _, tc := range []struct {
		sessions []string
		session  string
		want     bool
	}{
		{[]string{"*"}, "room:sales", true},
		{[]string{"*"}, "wr-1", true},
		{[]string{"sales"}, "room:sales", true},
		{[]string{"room:sales"}, "room:sales", true},
		{[]string{"room:sales"}, "room:support", false},
		{[]string{"sales-*"}, "room:sales-eu", true},
		{[]string{"sales-*"}, "room:support", false},
		{[]string{"sales"}, "sales", true}, // a call ID that looks like the name
		{[]string{"wr-*"}, "wr-5d1c", true},
		{[]string{"wr-*"}, "room:wr-x", true},
		{[]string{"*"}, "a84b4c76e66710/x@pc33.atlanta.com", true}, // "/" in a SIP Call-ID
		{[]string{"a84b*"}, "a84b4c76e66710/x@pc33.atlanta.com", true},
		{[]string{"a84b/*"}, "a84b/x", true},
		{[]string{"a84b/*"}, "a84c/x", false},
		{nil, "room:sales", false},
		{[]string{"["}, "room:sales", false}, // a bad pattern matches nothing
	} {
		c := Claims{User: "u", Sessions: tc.sessions}
		if got := c.MayWatch(tc.session); got != tc.want {
			t.Errorf("sessions %q: MayWatch(%q) = %v, want %v", tc.sessions, tc.session, got, tc.want)
		}
	}
}

// memFeeds is an in-memory Feeds: "room:test" has two events and then
// waits; every other session does not exist.
type memFeeds struct{}

type memFeed struct{ n int }

func (memFeeds) FollowLeg(ctx context.Context, legID, session string, from uint64) (Feed, error) {
	return nil, ErrNoSession
}

func (memFeeds) Watch(ctx context.Context, session string, from uint64) (Feed, error) {
	if session != "room:test" {
		return nil, ErrNoSession
	}
	return &memFeed{n: int(min(from, 2))}, nil
}

func (f *memFeed) Next(ctx context.Context) (FeedItem, error) {
	if f.n >= 2 {
		<-ctx.Done()
		return FeedItem{}, ctx.Err()
	}
	f.n++
	ev, _ := json.Marshal(map[string]any{"seq": f.n, "type": "signal"})
	return FeedItem{Session: "room:test", Seq: uint64(f.n), Event: ev}, nil
}

func (*memFeed) Close() {}

// FuzzWSMessage sends one arbitrary text message on a logged-in socket
// (messages that would place a call or log in again are left out): the
// server answers with well-formed JSON only, never closes the socket, and
// still answers a ping after it.
func FuzzWSMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"watch","id":"1","session":"room:test"}`,
		`{"type":"watch","id":"1","session":"room:test","seq":1}`,
		`{"type":"watch","session":"room:nope"}`,
		`{"type":"unwatch","session":"room:test"}`,
		`{"type":"unwatch","session":"room:nope"}`,
		`{"type":"watch","session":5}`,
		`{"type":"watch","session":"room:\u0000"}`,
		`{"type":"watch","session":"` + strings.Repeat("x", 300) + `"}`,
		`{"type":"resume","call":"wr-1","session":"room:test","seq":3}`,
		`{"type":"resume","call":"wr-1","session":7}`,
		`{"type":"signal","call":"wr-1","text":"x","event":{}}`,
		`{"type":"chat","call":"wr-1","text":"hi"}`,
		`{not json`,
		``,
	} {
		f.Add([]byte(s))
	}
	tok, _ := NewTokens([]byte("sixteen bytes at least!"))
	b, err := New(Config{Tokens: tok, ICEAddr: "127.0.0.1:0", Feeds: memFeeds{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	f.Cleanup(func() { srv.Close(); _ = b.Close() })
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m struct {
			Type string `json:"type"`
		}
		if len(raw) > MaxFrame/2 || (json.Unmarshal(raw, &m) == nil && (m.Type == "hello" || m.Type == "call" || m.Type == "answer")) {
			return
		}
		c := dial(t, url, "")
		send(t, c, Message{Type: "hello", Token: tok.MintFor("fuzz", time.Hour)})
		if m, _ := next(t, c); m.Type != "welcome" {
			t.Fatalf("login: %+v", m)
		}
		if err := wsutil.WriteClientText(c, raw); err != nil {
			t.Fatal(err)
		}
		send(t, c, Message{Type: "ping", ID: "after-fuzz"})
		for i := 0; i < 64; i++ {
			got, code := next(t, c) // fails on JSON that is not well-formed
			if code != 0 {
				t.Fatalf("the socket closed with %d after %q", code, raw)
			}
			if got.Type == "pong" && got.ID == "after-fuzz" {
				return
			}
		}
		t.Fatalf("no pong after %q", raw)
	})
}
