package sip

import (
	"io"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

// txMemory keeps an entry for at least its span and at most a quarter of
// a span more, and gives the memory back when its generation goes.
func TestTxMemoryKeepsEntriesForTheirSpan(t *testing.T) {
	const span = 32 * time.Second
	for _, tc := range []struct {
		name    string
		after   time.Duration // from remember to recall
		want    bool
		wantLen int // entries kept at the recall
	}{
		{"at once", 0, true, 1},
		{"half a span", span / 2, true, 1},
		{"just under the span", span - time.Millisecond, true, 1},
		{"at the span and a quarter", span + span/4, false, 0},
		{"long after", 10 * span, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			m := newTxMemory(span)
			m.now = func() time.Time { return now }
			defer m.close()
			m.remember("z9hG4bK-1__127.0.0.1:5060__BYE", 481)
			now = now.Add(tc.after)
			status, ok := m.recall("z9hG4bK-1__127.0.0.1:5060__BYE")
			if ok != tc.want || (ok && status != 481) {
				t.Fatalf("recall after %s = %d, %v; want 481, %v", tc.after, status, ok, tc.want)
			}
			if _, ok := m.recall("z9hG4bK-2__127.0.0.1:5060__BYE"); ok {
				t.Fatal("a key never remembered was recalled")
			}
			if n := m.len(); n != tc.wantLen {
				t.Fatalf("len = %d, want %d", n, tc.wantLen)
			}
		})
	}
}

// Entries remembered across generations each live their span; the
// rotation timer drops them on an idle server too, then stops.
func TestTxMemoryRotatesWhileIdle(t *testing.T) {
	m := newTxMemory(80 * time.Millisecond) // generations of 20 ms
	defer m.close()
	m.remember("a", 200)
	time.Sleep(30 * time.Millisecond)
	m.remember("b", txAbsorb)
	if s, ok := m.recall("a"); !ok || s != 200 {
		t.Fatalf("a: %d %v", s, ok)
	}
	if s, ok := m.recall("b"); !ok || s != txAbsorb {
		t.Fatalf("b: %d %v", s, ok)
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still kept 5 s after a span of 80 ms", m.len())
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.mu.Lock()
	armed := m.timer != nil
	m.mu.Unlock()
	for i := 0; armed && i < 50; i++ { // the last tick sees nothing left and stops
		time.Sleep(10 * time.Millisecond)
		m.mu.Lock()
		armed = m.timer != nil
		m.mu.Unlock()
	}
	if armed {
		t.Fatal("the rotation timer is still armed with nothing kept")
	}
}

// fakeConn is a sipgo connection that counts what is written to it.
type fakeConn struct {
	mu      sync.Mutex
	written []sip.Message
}

func (c *fakeConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }
func (c *fakeConn) WriteMsg(m sip.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written = append(c.written, m)
	return nil
}
func (c *fakeConn) Ref(int) int            { return 1 }
func (c *fakeConn) TryClose() (int, error) { return 1, nil }
func (c *fakeConn) Close() error           { return nil }
func (c *fakeConn) count() int             { c.mu.Lock(); defer c.mu.Unlock(); return len(c.written) }
func timerL(tx *sip.ServerTx) **time.Timer {
	return (**time.Timer)(unsafe.Add(unsafe.Pointer(tx), timerLFields.timer))
}
func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func mustParse(t *testing.T, s string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stopTimerL finds sipgo's fields (this fails if an upgrade renamed
// them), and stops the Timer L a 2xx started, which sipgo's Terminate
// leaves running.
func TestStopTimerLFindsSipgoFields(t *testing.T) {
	if !timerLFields.ok {
		t.Fatal("sip.ServerTx has no mu sync.Mutex / timer_l *time.Timer: sipgo changed; stopTimerL does nothing and ended calls' INVITE transactions stay in memory 32 s")
	}
	if f, ok := reflect.TypeFor[sip.ServerTx]().FieldByName("timer_l"); !ok || f.Offset != timerLFields.timer {
		t.Fatalf("timer_l offset %d, want %d", f.Offset, timerLFields.timer)
	}
	invite := mustParse(t, "INVITE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-x\r\n"+
		"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").(*sip.Request)
	conn := &fakeConn{}
	tx := sip.NewServerTx("k", invite, conn, discardLogger())
	if err := tx.Init(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Respond(sip.NewResponseFromRequest(invite, 200, "OK", nil)); err != nil {
		t.Fatal(err)
	}
	if conn.count() != 1 {
		t.Fatalf("%d messages written, want the 200", conn.count())
	}
	if *timerL(tx) == nil {
		t.Fatal("a 2xx did not start Timer L: sipgo changed")
	}
	tx.Terminate()
	if *timerL(tx) == nil {
		t.Log("sipgo's Terminate now stops Timer L itself: stopTimerL can go")
	}
	stopTimerL(tx)
	if *timerL(tx) != nil {
		t.Fatal("Timer L still set after stopTimerL")
	}
}
