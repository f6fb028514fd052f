package sip

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestClassifyMessage(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		method Method
		status int
		ok     bool
	}{
		{"invite", "INVITE sip:ivr@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCSeq: 1 INVITE\r\n\r\n", MethodInvite, 0, true},
		{"bye", "BYE sip:a@b SIP/2.0\r\n\r\n", MethodBye, 0, true},
		{"unknown method", "FOO sip:a@b SIP/2.0\r\n\r\n", MethodOther, 0, true},
		{"lower-case method is another token", "invite sip:a@b SIP/2.0\r\n\r\n", MethodOther, 0, true},
		{"200 to invite", "SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 7 INVITE\r\n\r\nv=0\r\n", MethodInvite, 200, true},
		{"486 to invite, header case", "SIP/2.0 486 Busy Here\r\ncseq:  12   INVITE\r\n\r\n", MethodInvite, 486, true},
		{"100 to register", "SIP/2.0 100 Trying\r\nCSeq: 2 REGISTER\r\n\r\n", MethodRegister, 100, true},
		{"response without cseq", "SIP/2.0 404 Not Found\r\nVia: x\r\n\r\nCSeq: 1 BYE\r\n", MethodOther, 404, true},
		{"cseq without number", "SIP/2.0 404 Not Found\r\nCSeq: BYE\r\n\r\n", MethodOther, 404, true},
		{"bad status", "SIP/2.0 2x0 OK\r\n\r\n", 0, 0, false},
		{"status out of range", "SIP/2.0 700 Huh\r\n\r\n", 0, 0, false},
		{"short status line", "SIP/2.0 20\r\n", 0, 0, false},
		{"keep-alive", "\r\n\r\n", 0, 0, false},
		{"body written alone", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", 0, 0, false},
		{"no newline", "INVITE sip:a@b SIP/2.0", 0, 0, false},
		{"wrong version", "INVITE sip:a@b SIP/3.0\r\n\r\n", 0, 0, false},
		{"empty", "", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, st, ok := classifyMessage([]byte(tt.data))
			if m != tt.method || st != tt.status || ok != tt.ok {
				t.Fatalf("classify = %v %d %v, want %v %d %v", m, st, ok, tt.method, tt.status, tt.ok)
			}
		})
	}
}

func TestClassifyMessageAllocatesNothing(t *testing.T) {
	data := []byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 1.2.3.4\r\nFrom: <sip:a@b>;tag=1\r\nCSeq: 1 INVITE\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { classifyMessage(data) }); n != 0 {
		t.Fatalf("classifyMessage allocates %.0f times per message", n)
	}
}

func TestMethodAndReasonNames(t *testing.T) {
	for m := MethodOther; m < NumMethods; m++ {
		if m != MethodOther && parseMethod([]byte(m.String())) != m {
			t.Fatalf("%v does not parse back", m)
		}
	}
	seen := map[string]bool{}
	for r := RejectReason(0); r < NumRejectReasons; r++ {
		if r.String() == "other" || seen[r.String()] {
			t.Fatalf("reason %d has no distinct name: %q", r, r.String())
		}
		seen[r.String()] = true
	}
	if MessageIn.String() != "in" || MessageOut.String() != "out" {
		t.Fatal("direction names")
	}
}

func FuzzClassifyMessage(f *testing.F) {
	f.Add([]byte("INVITE sip:ivr@127.0.0.1 SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\n\r\n"))
	f.Add([]byte("SIP/2.0 999\r\nCSeq: x\r\n"))
	f.Add([]byte("\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, st, ok := classifyMessage(data)
		if m >= NumMethods {
			t.Fatalf("method %d out of range", m)
		}
		if ok && st != 0 && (st < 100 || st > 699) {
			t.Fatalf("status %d", st)
		}
		if !ok && (m != 0 || st != 0) {
			t.Fatal("values without ok")
		}
	})
}

// BenchmarkClassifyMessage is the per-message cost of SIP metrics on the
// socket path: start line and CSeq of a 180.
func BenchmarkClassifyMessage(b *testing.B) {
	data := []byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\nFrom: <sip:alice@example.com>;tag=1928301774\r\n" +
		"To: <sip:bob@example.com>;tag=a6c85cf\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		classifyMessage(data)
	}
}

// The pending-INVITE count never exceeds its limit, however many INVITEs
// race for the last places.
func TestTakePendingBounded(t *testing.T) {
	a := &Agent{}
	const limit, workers = 3, 8
	var wg sync.WaitGroup
	var over atomic.Bool
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if a.takePending(limit) {
					if a.pendingInvites.Load() > limit {
						over.Store(true)
					}
					a.pendingInvites.Add(-1)
				}
			}
		}()
	}
	wg.Wait()
	if over.Load() {
		t.Fatal("pending count went over the limit")
	}
	if n := a.pendingInvites.Load(); n != 0 {
		t.Fatalf("pending = %d after every release", n)
	}
	for range limit {
		if !a.takePending(limit) {
			t.Fatal("refused below the limit")
		}
	}
	if a.takePending(limit) {
		t.Fatal("admitted over the limit")
	}
	if !a.takePending(-1) {
		t.Fatal("a negative limit must not refuse")
	}
}
