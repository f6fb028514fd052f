package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestTokens(t *testing.T) {
	tok, err := NewTokens([]byte("sixteen bytes at least!"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := tok.Mint(Claims{User: "alice", Expires: now.Add(time.Hour).Unix(), Routes: []string{"sales-*", "tone"}})
	c, err := tok.Verify(good, now)
	if err != nil || c.User != "alice" {
		t.Fatalf("a fresh token: %+v %v", c, err)
	}
	if !c.MayCall("tone") || !c.MayCall("sales-eu") || c.MayCall("bob") {
		t.Errorf("routes: tone %v sales-eu %v bob %v", c.MayCall("tone"), c.MayCall("sales-eu"), c.MayCall("bob"))
	}
	if _, err := tok.Verify(good, now.Add(2*time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Errorf("an expired token: %v", err)
	}
	other, _ := NewTokens([]byte("another key, also long"))
	for name, bad := range map[string]string{
		"other key":  other.Mint(Claims{User: "alice", Expires: now.Add(time.Hour).Unix()}),
		"tampered":   strings.Replace(good, good[:4], "eyJz", 1) + "x",
		"no dot":     "abc",
		"empty":      "",
		"no user":    tok.Mint(Claims{Expires: now.Add(time.Hour).Unix()}),
		"no expiry":  tok.Mint(Claims{User: "alice"}),
		"huge":       strings.Repeat("a", 5000),
		"bad base64": "!!!." + strings.Split(good, ".")[1],
	} {
		if _, err := tok.Verify(bad, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewTokens([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func FuzzVerifyToken(f *testing.F) {
	tok, _ := NewTokens([]byte("sixteen bytes at least!"))
	f.Add(tok.MintFor("alice", time.Hour))
	f.Add("a.b")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = tok.Verify(s, time.Now())
	})
}

// testBridge serves a bridge's /ws on an httptest server.
func testBridge(t *testing.T) (*Bridge, *Tokens, string) {
	t.Helper()
	tok, _ := NewTokens([]byte("sixteen bytes at least!"))
	b, err := New(Config{Tokens: tok, ICEAddr: "127.0.0.1:0", HelloTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(func() { srv.Close(); _ = b.Close() })
	return b, tok, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dial(t *testing.T, url string, origin string) net.Conn {
	t.Helper()
	d := ws.Dialer{Timeout: 2 * time.Second}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": []string{origin}})
	}
	c, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c net.Conn, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := wsutil.WriteClientText(c, b); err != nil {
		t.Fatal(err)
	}
}

// next reads the next text message, or reports the close code.
func next(t *testing.T, c net.Conn) (Message, ws.StatusCode) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		msgs, err := wsutil.ReadServerMessage(c, nil)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				return Message{}, ce.Code
			}
			t.Fatalf("read: %v", err)
		}
		for _, m := range msgs {
			if m.OpCode == ws.OpClose {
				code, _ := ws.ParseCloseFrameData(m.Payload)
				return Message{}, code
			}
			if m.OpCode == ws.OpText {
				var msg Message
				if err := json.Unmarshal(m.Payload, &msg); err != nil {
					t.Fatalf("server sent bad JSON: %q", m.Payload)
				}
				return msg, 0
			}
		}
	}
}

// Bad input on /ws gets a clear error message or close code, in bounded
// time, and never takes the bridge down.
func TestWebSocketBadInput(t *testing.T) {
	_, tok, url := testBridge(t)

	t.Run("no hello in time", func(t *testing.T) {
		c := dial(t, url, "")
		if m, _ := next(t, c); m.Type != "error" || m.Code != 4001 {
			t.Fatalf("got %+v, want error 4001", m)
		}
		if _, code := next(t, c); code != 4001 {
			t.Fatalf("close code %d, want 4001", code)
		}
	})
	t.Run("something else first", func(t *testing.T) {
		c := dial(t, url, "")
		send(t, c, Message{Type: "call", To: "tone", SDP: "v=0"})
		if m, _ := next(t, c); m.Code != 4001 {
			t.Fatalf("got %+v, want error 4001", m)
		}
	})
	for name, token := range map[string]string{
		"bad token":     "nope",
		"expired token": tok.Mint(Claims{User: "alice", Expires: time.Now().Add(-time.Minute).Unix()}),
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, url, "")
			send(t, c, Message{Type: "hello", Token: token})
			if m, _ := next(t, c); m.Type != "error" || m.Code != 4003 {
				t.Fatalf("got %+v, want error 4003", m)
			}
			if _, code := next(t, c); code != 4003 {
				t.Fatalf("close code %d, want 4003", code)
			}
		})
	}
	t.Run("wrong origin", func(t *testing.T) {
		d := ws.Dialer{Timeout: 2 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": []string{"https://evil.example"}})}
		if _, _, _, err := d.Dial(context.Background(), url); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("upgrade from a foreign origin: %v, want a 403", err)
		}
	})
	t.Run("after login", func(t *testing.T) {
		c := dial(t, url, "")
		send(t, c, Message{Type: "hello", Token: tok.MintFor("alice", time.Hour)})
		if m, _ := next(t, c); m.Type != "welcome" || m.User != "alice" || m.Version != ProtocolVersion {
			t.Fatalf("got %+v, want welcome", m)
		}
		if err := wsutil.WriteClientText(c, []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		if m, _ := next(t, c); m.Type != "error" || m.Code != 400 {
			t.Fatalf("malformed JSON: %+v", m)
		}
		send(t, c, Message{Type: "teleport", ID: "7"})
		if m, _ := next(t, c); m.Type != "error" || m.ID != "7" || !strings.Contains(m.Error, "unknown") {
			t.Fatalf("unknown type: %+v", m)
		}
		send(t, c, Message{Type: "call", ID: "8", To: "tone", SDP: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"})
		if m, _ := next(t, c); m.Type != "error" || m.ID != "8" || m.Code != 488 {
			t.Fatalf("an offer without audio: %+v", m)
		}
		send(t, c, Message{Type: "ping", ID: "9"})
		if m, _ := next(t, c); m.Type != "pong" || m.ID != "9" {
			t.Fatalf("ping: %+v", m)
		}
		// 1 MiB in one frame: closed with 1009 (the server may close
		// while the frame is still being written).
		_ = wsutil.WriteClientText(c, make([]byte, 1<<20))
		if _, code := next(t, c); code != ws.StatusMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
}
