package sip

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func wsFrame(t testing.TB, fin bool, op ws.OpCode, masked bool, payload []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload)), Masked: masked}
	if masked {
		h.Mask = [4]byte{1, 2, 3, 4}
	}
	if err := ws.WriteHeader(&b, h); err != nil {
		t.Fatal(err)
	}
	b.Write(payload)
	return b.Bytes()
}

func TestWSFrames(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000) // 64-bit length
	mid := bytes.Repeat([]byte("y"), 300)   // 16-bit length
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name   string
		skip   int
		stream []byte
		// in: whether a message is in progress after each prefix length
		// listed in at (and after the whole stream: last).
		at   []int
		in   []bool
		last bool
	}{
		{"small masked frame", 0, wsFrame(t, true, ws.OpText, true, []byte("hello")), []int{0, 1, 5, 10}, []bool{false, true, true, true}, false},
		{"16-bit length", 0, wsFrame(t, true, ws.OpText, true, mid), []int{3, 8, 100}, []bool{true, true, true}, false},
		{"64-bit length", 0, wsFrame(t, true, ws.OpText, false, big), []int{9, 10, 5000}, []bool{true, true, true}, false},
		{"fragmented message", 0, cat(wsFrame(t, false, ws.OpText, true, []byte("ab")), wsFrame(t, true, ws.OpContinuation, true, []byte("cd"))),
			[]int{8}, []bool{true}, false},
		{"ping between fragments", 0, cat(wsFrame(t, false, ws.OpText, true, []byte("ab")), wsFrame(t, true, ws.OpPing, true, nil)),
			[]int{}, []bool{}, true},
		{"two frames", 0, cat(wsFrame(t, true, ws.OpText, true, []byte("ab")), wsFrame(t, true, ws.OpText, true, []byte("cd"))),
			[]int{8, 9}, []bool{false, true}, false},
		{"after an upgrade request", 20, cat(bytes.Repeat([]byte("G"), 20), wsFrame(t, true, ws.OpText, true, []byte("ab"))),
			[]int{10, 20, 21}, []bool{false, false, true}, false},
		{"truncated frame", 0, wsFrame(t, true, ws.OpText, true, []byte("hello"))[:8], nil, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Byte by byte, and all at once.
			w := wsFrames{skip: tc.skip}
			for i := range tc.stream {
				for k, at := range tc.at {
					if at == i && w.inMessage() != tc.in[k] {
						t.Fatalf("after %d bytes: in message %v, want %v", i, w.inMessage(), tc.in[k])
					}
				}
				w.feed(tc.stream[i : i+1])
			}
			if w.inMessage() != tc.last {
				t.Fatalf("byte by byte, at the end: in message %v, want %v", w.inMessage(), tc.last)
			}
			all := wsFrames{skip: tc.skip}
			all.feed(tc.stream)
			if all.inMessage() != tc.last {
				t.Fatalf("at once: in message %v, want %v", all.inMessage(), tc.last)
			}
		})
	}
}

// A WebSocket frame that announces more than arrives is closed at the
// message deadline, even on a connection with a long idle lifetime.
func TestWebSocketStalledFrameClosed(t *testing.T) {
	const msgTimeout = 500 * time.Millisecond
	a, logs := startGuardedAgent(t, ConnLimits{MessageTimeout: msgTimeout, IdleTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, wsServer(t, a), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := wsutil.WriteClientText(c, []byte(optionsRequest("ws-stall", "WS", 0, ""))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if msg, err := wsutil.ReadServerText(c); err != nil || !bytes.HasPrefix(msg, []byte("SIP/2.0 200")) {
		t.Fatalf("OPTIONS over WS: %q %v", msg, err)
	}
	// A header for 1000 bytes, then 10.
	frame := wsFrame(t, true, ws.OpText, true, bytes.Repeat([]byte("z"), 1000))
	if _, err := c.Write(frame[:8+10]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed, _ := closedWithin(c, msgTimeout+3*time.Second)
	if !closed {
		t.Fatalf("a stalled frame still held the connection after %s", time.Since(start))
	}
	t.Logf("closed %s after the stalled frame (deadline %s)", time.Since(start).Round(time.Millisecond), msgTimeout)
	if logs.find("message incomplete", "transport=WS", "frame_bytes_missing=990") == "" {
		t.Error("stall not logged with what was missing")
	}
}

// FuzzWSFrames follows arbitrary bytes as a WebSocket stream, whole and in
// two pieces: never a panic, and the same state either way.
func FuzzWSFrames(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, 'h', 'e', 'l', 'l', 'o'}, uint16(3))
	f.Add([]byte{0x01, 0xfe, 0x01, 0x00}, uint16(1))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0}, uint16(9))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		var whole, split wsFrames
		whole.feed(b)
		k := min(int(cut), len(b))
		split.feed(b[:k])
		split.feed(b[k:])
		if whole != split {
			t.Fatalf("state depends on how the bytes were cut: %+v vs %+v", whole, split)
		}
	})
}
