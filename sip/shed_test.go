package sip

import (
	"bytes"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media/transport"
)

func TestHeaderTag(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`<sip:a@b>`, ""},
		{`<sip:a@b>;tag=abc`, "abc"},
		{`"Bob" <sip:a@b;tag=uri>;tag=hdr`, "hdr"},
		{`<sip:a@b;tag=uri>`, ""},
		{`sip:a@b;tag=x1`, "x1"},
		{`sip:a@b`, ""},
		{`<sip:a@b> ; TAG = up ;x=1`, "up"},
		{`<sip:a@b>;tagx=1;tag=2`, "2"},
		{`<sip:a@b>;tag=`, ""},
		{`<sip:a@b>;tag`, ""},
		{`;;;`, ""},
	} {
		if got := string(headerTag([]byte(tc.value))); got != tc.want {
			t.Errorf("headerTag(%q) = %q, want %q", tc.value, got, tc.want)
		}
	}
}

func TestDeltaQuantile(t *testing.T) {
	buckets := []float64{0, 0.001, 0.01, 0.1, 1}
	inf := []float64{0, 0.001, 0.01, 0.1, math.Inf(1)}
	for _, tc := range []struct {
		name         string
		prev, counts []uint64
		buckets      []float64
		q, want      float64
	}{
		{"nothing new", []uint64{5, 5, 5, 5}, []uint64{5, 5, 5, 5}, buckets, 0.9, -1},
		{"all fast", []uint64{0, 0, 0, 0}, []uint64{100, 0, 0, 0}, buckets, 0.9, 0.001},
		{"p90 in the slow bucket", []uint64{0, 0, 0, 0}, []uint64{80, 5, 15, 0}, buckets, 0.9, 0.1},
		{"p90 just below", []uint64{0, 0, 0, 0}, []uint64{80, 15, 5, 0}, buckets, 0.9, 0.01},
		{"only the delta counts", []uint64{1000, 0, 0, 0}, []uint64{1000, 0, 0, 10}, buckets, 0.9, 1},
		{"open-ended top bucket", []uint64{0, 0, 0, 0}, []uint64{0, 0, 0, 3}, inf, 0.5, 0.1},
	} {
		if got := deltaQuantile(tc.prev, tc.counts, tc.buckets, tc.q); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The probe sees the scheduler's queue: with many more busy goroutines
// than CPUs, runnable ones wait for a time slice.
func TestSchedLatencyRisesWhenCPUsAreBusy(t *testing.T) {
	var l schedLatency
	l.start()
	defer l.close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 * runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
					_ = i * i
				}
			}
		}()
	}
	var seen time.Duration
	for end := time.Now().Add(5 * time.Second); seen <= time.Millisecond && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
		seen = max(seen, l.recent())
	}
	close(stop)
	wg.Wait()
	if seen <= time.Millisecond {
		t.Fatalf("scheduler latency stayed at %v with %d busy goroutines on %d CPUs", seen, 8*runtime.GOMAXPROCS(0), runtime.GOMAXPROCS(0))
	}
}

// shedPhone is a raw UDP SIP client for the early-shedding tests.
type shedPhone struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
}

func (p *shedPhone) invite(id string) string {
	local, server := p.conn.LocalAddr().String(), p.server.String()
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	return "INVITE sip:echo@" + server + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + "\r\n" +
		"From: <sip:t@guest.invalid>;tag=f" + id + "\r\nTo: <sip:echo@" + server + ">\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:t@" + local + ">\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
}

func (p *shedPhone) send(msg string) {
	if _, err := p.conn.WriteToUDP([]byte(msg), p.server); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next response for Call-ID id within d ("" if none),
// 100 Trying aside.
func (p *shedPhone) next(id string, d time.Duration) string { return p.read(id, d, true) }

// nextAny is next with 100 Trying included.
func (p *shedPhone) nextAny(id string, d time.Duration) string { return p.read(id, d, false) }

// read returns the next message for Call-ID id within d, skipping 100s
// with skip100 ("" if none).
func (p *shedPhone) read(id string, d time.Duration, skip100 bool) string {
	buf := make([]byte, 4000)
	for end := time.Now().Add(d); time.Now().Before(end); {
		_ = p.conn.SetReadDeadline(end)
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "\r\nCall-ID: "+id+"\r\n") && !(skip100 && strings.HasPrefix(msg, "SIP/2.0 100")) {
			return msg
		}
	}
	return ""
}

func headerOf(msg, name string) string {
	for _, line := range strings.Split(msg, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return v
		}
	}
	return ""
}

// newShedAgent starts an agent whose calls stay pending (OnInvite holds
// them) until the test ends.
func newShedAgent(t *testing.T, o OverloadOptions) (*Agent, *shedPhone, *atomic.Int32) {
	t.Helper()
	hold := make(chan struct{})
	var invited atomic.Int32
	a, p := newRawAgent(t, o, func(l *Leg) { invited.Add(1); <-hold })
	t.Cleanup(func() { close(hold) }) // registered last, so it runs before the agent closes
	return a, p, &invited
}

// newRawAgent starts an agent on loopback UDP (RTP ports 35100-35199)
// with onInvite for its calls, and a raw UDP phone for it.
func newRawAgent(t *testing.T, o OverloadOptions, onInvite func(*Leg)) (*Agent, *shedPhone) {
	return newRawAgentWith(t, func(c *Config) { c.Overload = o }, onInvite)
}

// newRawAgentWith is newRawAgent with the agent's configuration set by
// configure.
func newRawAgentWith(t *testing.T, configure func(*Config), onInvite func(*Leg)) (*Agent, *shedPhone) {
	t.Helper()
	ports, err := transport.NewPortPool(35100, 35199)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ListenAddr: "127.0.0.1:0", Ports: ports, MediaTimeout: -1,
		Logger:     slog.New(slog.NewTextHandler(&logLines{}, nil)),
		CallLimits: CallLimits{GuestCalls: -1, GuestRate: -1, GuestShare: -1},
		OnInvite:   onInvite,
	}
	configure(&cfg)
	a, err := NewAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		conn.Close()
	})
	return a, &shedPhone{t: t, conn: conn, server: net.UDPAddrFromAddrPort(a.Addr())}
}

// Above the pending limit a new INVITE is refused in the read loop with a
// stateless 503: Retry-After, a To tag of its own, the same 503 for its
// retransmissions, its ACK dropped before parsing; an INVITE let through
// before stays let through (its retransmission reaches its transaction).
func TestEarlyShedRefusesStatelessly(t *testing.T) {
	a, p, invited := newShedAgent(t, OverloadOptions{MaxPendingInvites: 1, MaxSchedLatency: -1, RetryAfter: 7 * time.Second})
	first := p.invite("shed-first")
	p.send(first)
	for end := time.Now().Add(5 * time.Second); a.PendingInvites() < 1 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if a.PendingInvites() != 1 {
		t.Fatalf("pending INVITEs %d, want 1", a.PendingInvites())
	}

	second := p.invite("shed-second")
	p.send(second)
	res := p.next("shed-second", 3*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 503 ") {
		t.Fatalf("second INVITE: want a 503, got %q", res)
	}
	if ra := headerOf(res, "Retry-After"); ra != "7" {
		t.Errorf("Retry-After %q, want 7", ra)
	}
	msg, err := sip.ParseMessage([]byte(res))
	if err != nil {
		t.Fatalf("the stateless 503 does not parse: %v\n%s", err, res)
	}
	r := msg.(*sip.Response)
	tag, _ := r.To().Params.Get("tag")
	if !strings.HasPrefix(tag, shedTagPrefix) {
		t.Fatalf("To tag %q, want one starting %q", tag, shedTagPrefix)
	}
	if r.Via() == nil || !strings.Contains(r.Via().Value(), "z9hG4bKshed-second") || r.CSeq().MethodName != sip.INVITE {
		t.Fatalf("503 does not match its INVITE: %s", res)
	}

	p.send(second) // a retransmission: the same answer
	if again := p.next("shed-second", 3*time.Second); again != res {
		t.Fatalf("retransmission answered differently:\n%s\nthen\n%s", res, again)
	}
	ack := "ACK sip:echo@" + p.server.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + p.conn.LocalAddr().String() + ";branch=z9hG4bKshed-second\r\n" +
		"From: <sip:t@guest.invalid>;tag=fshed-second\r\nTo: <sip:echo@" + p.server.String() + ">;tag=" + tag + "\r\nCall-ID: shed-second\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	before := a.shed.acks.Load()
	p.send(ack)
	for end := time.Now().Add(3 * time.Second); a.shed.acks.Load() == before && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if a.shed.acks.Load() != before+1 {
		t.Fatalf("the 503's ACK was not dropped in the read loop")
	}

	p.send(first) // the admitted INVITE's retransmission must not be refused
	if got := p.next("shed-first", 700*time.Millisecond); strings.HasPrefix(got, "SIP/2.0 503") {
		t.Fatalf("a retransmission of an admitted INVITE was refused: %q", got)
	}
	if n := invited.Load(); n != 1 {
		t.Fatalf("%d calls reached the application, want 1", n)
	}
}

// With the scheduler's queueing delay over MaxSchedLatency, new INVITEs
// are refused before parsing, and admitted again once it falls.
func TestEarlyShedOnSchedLatency(t *testing.T) {
	a, p, invited := newShedAgent(t, OverloadOptions{MaxPendingInvites: -1, MaxSchedLatency: 20 * time.Millisecond})
	a.shed.latency.close() // the test sets the signal itself
	a.shed.latency.p90.Store(int64(100 * time.Millisecond))
	p.send(p.invite("lat-1"))
	if res := p.next("lat-1", 3*time.Second); !strings.HasPrefix(res, "SIP/2.0 503 ") {
		t.Fatalf("INVITE while the scheduler lags: want 503, got %q", res)
	}
	a.shed.latency.p90.Store(int64(time.Millisecond))
	p.send(p.invite("lat-2"))
	for end := time.Now().Add(3 * time.Second); invited.Load() == 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if invited.Load() != 1 {
		t.Fatalf("INVITE after the lag fell did not reach the application")
	}
}

// FuzzStateless503: whatever a datagram holds, the early shedding's
// header scan and its 503 never panic, and a 503 it builds parses and
// answers the same call with its own To tag.
func FuzzStateless503(f *testing.F) {
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK2\r\nf: x <sip:x@y>;tag=1\r\nt: \"q;tag=no\" <sip:a@b;tag=uri>\r\ni: c2\r\nCSeq: 9 INVITE\r\nl: 0\r\n\r\n"))
	f.Add([]byte("ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=sbshed123\r\nCall-ID: c3\r\nCSeq: 1 ACK\r\n\r\n"))
	a := &Agent{cfg: Config{UserAgent: "Switchboard"}, shed: newShedder()}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h rawHead
		problem, isRequest := lintMessageInto(data, &h)
		if problem != "" || !isRequest || !bytes.Equal(h.method, []byte("INVITE")) || h.toTag != nil {
			return
		}
		key := a.shed.key(&h)
		res := a.stateless503(data, key)
		if res == nil {
			return
		}
		msg, err := sip.ParseMessage(res)
		if err != nil {
			// The request itself may be beyond sipgo's parser; the 503 is
			// only as good as the lines it copies.
			// sipgo reads a request's headers lazily: only an INVITE whose
			// Via, From and To it can read must get a 503 it can read.
			if m, perr := sip.ParseMessage(data); perr == nil {
				if req, ok := m.(*sip.Request); ok && req.Via() != nil && req.From() != nil && req.To() != nil && req.CSeq() != nil {
					t.Fatalf("503 of a parseable INVITE does not parse: %v\n%q", err, res)
				}
			}
			return
		}
		r, ok := msg.(*sip.Response)
		if !ok || r.StatusCode != 503 {
			t.Fatalf("not a 503: %q", res)
		}
		if tag, _ := r.To().Params.Get("tag"); tag != shedTagPrefix+strconv.FormatUint(key, 36) {
			t.Fatalf("To tag %q, want %s…", tag, shedTagPrefix)
		}
		if cid := r.CallID(); cid == nil || cid.Value() != string(bytes.TrimSpace(h.callID)) {
			t.Fatalf("Call-ID %v, want %q", cid, h.callID)
		}
	})
}
