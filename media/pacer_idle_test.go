package media

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// idlePool is the port pool of the idle-pacing tests (43450-43499 is
// used by no other test).
func idlePool(t *testing.T) *transport.PortPool {
	t.Helper()
	pool, err := transport.NewPortPool(43450, 43499)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

var loopback = netip.MustParseAddr("127.0.0.1")

// newShardEndpoint starts a PCMU endpoint (digits on dtmf, direction dir)
// on a one-shard pacer whose goroutine is not started, so a test drives
// the shard pass by pass; both are closed with the test.
func newShardEndpoint(t *testing.T, pool *transport.PortPool, opts EndpointOptions, dtmf uint8, dir string) (*Pacer, *pacerShard, *Endpoint, StreamConfig) {
	t.Helper()
	p := newPacer(1, false)
	t.Cleanup(p.Close)
	opts.Pacer = p
	e, err := NewEndpoint(pool, loopback, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	pcmu := codec.Codecs()[0]
	cfg := StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: dtmf, Remote: netip.MustParseAddrPort("127.0.0.1:9"), Direction: dir}
	e.Configure(cfg)
	e.Start()
	return p, p.shards[0], e, cfg
}

// Which endpoints leave the 20 ms pass, driven pass by pass on a shard
// whose goroutine is not started: only those with nothing to play, send
// or decode, and only after demoteAfter quiet ticks.
func TestPacerIdleWhen(t *testing.T) {
	cases := []struct {
		name  string
		opts  EndpointOptions
		dir   string
		dtmf  uint8 // DTMFPayloadType
		setup func(e *Endpoint) (undo func())
		feed  bool // a PCMU packet arrives before every pass
		idle  bool
	}{
		{name: "echo", setup: func(e *Endpoint) func() { return Bridge(e, e) }, idle: true},
		{name: "answered, sending silence", idle: false},
		{name: "on hold (recvonly)", dir: "recvonly", idle: true},
		{name: "inactive", dir: "inactive", idle: true},
		{name: "NoIdleSilence", opts: EndpointOptions{NoIdleSilence: true}, idle: true},
		// A consumer of decoded audio with nothing received has nothing
		// to decode (the first packet wakes it); with audio arriving it
		// stays on the pass.
		{name: "sink, nothing received", opts: EndpointOptions{NoIdleSilence: true}, setup: func(e *Endpoint) func() { e.SetSink(&capture{}); return func() {} }, idle: true},
		{name: "sink, audio arriving", opts: EndpointOptions{NoIdleSilence: true}, setup: func(e *Endpoint) func() { e.SetSink(&capture{}); return func() {} }, feed: true, idle: false},
		{name: "taps, nothing received", opts: EndpointOptions{NoIdleSilence: true}, setup: func(e *Endpoint) func() { e.SetTaps(&capture{}); return func() {} }, idle: true},
		{name: "taps, audio arriving", opts: EndpointOptions{NoIdleSilence: true}, setup: func(e *Endpoint) func() { e.SetTaps(&capture{}); return func() {} }, feed: true, idle: false},
		{name: "in-band DTMF detection, nothing received", opts: EndpointOptions{NoIdleSilence: true}, dtmf: 0,
			setup: func(e *Endpoint) func() { e.OnDTMF(func(DTMFEvent) {}); return func() {} }, idle: true},
		{name: "in-band DTMF detection, audio arriving", opts: EndpointOptions{NoIdleSilence: true}, dtmf: 0,
			setup: func(e *Endpoint) func() { e.OnDTMF(func(DTMFEvent) {}); return func() {} }, feed: true, idle: false},
		{name: "no consumer, audio arriving", opts: EndpointOptions{NoIdleSilence: true}, feed: true, idle: true},
		{name: "RFC 4733 digits only", opts: EndpointOptions{NoIdleSilence: true}, dtmf: 101,
			setup: func(e *Endpoint) func() { e.OnDTMF(func(DTMFEvent) {}); return func() {} }, idle: true},
		{name: "echo playing", setup: func(e *Endpoint) func() {
			stop := Bridge(e, e)
			e.Play(sine(440, 0, 0), nil)
			return stop
		}, idle: false},
		{name: "echo with RTCP every 100 ms", opts: EndpointOptions{RTCPInterval: 100 * time.Millisecond},
			setup: func(e *Endpoint) func() { return Bridge(e, e) }, idle: false},
		{name: "echo with a 200 ms media timeout", opts: EndpointOptions{MediaTimeout: 200 * time.Millisecond, OnMediaTimeout: func() {}},
			setup: func(e *Endpoint) func() { return Bridge(e, e) }, idle: false},
		{name: "echo with a 30 s media timeout", opts: EndpointOptions{MediaTimeout: 30 * time.Second, OnMediaTimeout: func() {}},
			setup: func(e *Endpoint) func() { return Bridge(e, e) }, idle: true},
	}
	pool := idlePool(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, sh, e, _ := newShardEndpoint(t, pool, c.opts, c.dtmf, c.dir)
			if c.setup != nil {
				defer c.setup(e)()
			}
			var f feeder
			pass := func() {
				if c.feed {
					f.feed(e)
				}
				sh.pass(time.Now())
			}
			// The pass that attaches it ticks it too: demoteAfter-1 passes
			// leave even an idle endpoint on the 20 ms pass.
			for range demoteAfter - 1 {
				pass()
			}
			if p.Idle() != 0 {
				t.Fatalf("idle after %d quiet ticks, want %d first", demoteAfter-1, demoteAfter)
			}
			for range 2 * demoteAfter {
				pass()
			}
			if got := p.Idle() == 1; got != c.idle {
				t.Fatalf("idle = %v, want %v", got, c.idle)
			}
			if got := len(sh.fast) + len(sh.slow); got != 1 || p.Len() != 1 {
				t.Fatalf("shard holds %d endpoints (pacer says %d), want 1", got, p.Len())
			}
			e.Close()
			sh.pass(time.Now())
			if len(sh.fast)+len(sh.slow) != 0 || p.Len() != 0 || p.Idle() != 0 {
				t.Fatalf("closed endpoint still on the shard: %d fast, %d slow", len(sh.fast), len(sh.slow))
			}
		})
	}
}

// Every event that can give an idle endpoint work puts it back on the
// 20 ms pass on the shard's very next tick (not at the slow list's next
// visit), driven pass by pass.
func TestPacerWakeEvents(t *testing.T) {
	cases := []struct {
		name string
		opts EndpointOptions
		dtmf uint8
		dir  string
		// idle makes the endpoint idle; wake is the event under test.
		idle func(e *Endpoint) (undo func())
		wake func(e *Endpoint, cfg StreamConfig)
		// feed: the event is audio arriving for a consumer set while
		// idle (set is called before the endpoint idles); a packet then
		// comes before every pass.
		feed bool
		set  func(e *Endpoint)
	}{
		{name: "Play", opts: EndpointOptions{NoIdleSilence: true}, wake: func(e *Endpoint, _ StreamConfig) { e.Play(sine(440, 0, 0), nil) }},
		{name: "SendDTMF", opts: EndpointOptions{NoIdleSilence: true}, dtmf: 101, wake: func(e *Endpoint, _ StreamConfig) { _ = e.SendDTMF('1', 0) }},
		{name: "SetSink", opts: EndpointOptions{NoIdleSilence: true}, wake: func(e *Endpoint, _ StreamConfig) { e.SetSink(&capture{}) }, feed: true},
		{name: "SetTaps", opts: EndpointOptions{NoIdleSilence: true}, wake: func(e *Endpoint, _ StreamConfig) { e.SetTaps(&capture{}) }, feed: true},
		{name: "OnDTMF without telephone-event", opts: EndpointOptions{NoIdleSilence: true}, wake: func(e *Endpoint, _ StreamConfig) { e.OnDTMF(func(DTMFEvent) {}) }, feed: true},
		{name: "audio for a sink", opts: EndpointOptions{NoIdleSilence: true}, set: func(e *Endpoint) { e.SetSink(&capture{}) }, feed: true},
		{name: "audio for in-band DTMF detection", opts: EndpointOptions{NoIdleSilence: true}, set: func(e *Endpoint) { e.OnDTMF(func(DTMFEvent) {}) }, feed: true},
		{name: "unbridge", idle: func(e *Endpoint) func() { return Bridge(e, e) }},
		{name: "Configure: unhold", dir: "recvonly", wake: func(e *Endpoint, cfg StreamConfig) { cfg.Direction = "sendrecv"; e.Configure(cfg) }},
	}
	pool := idlePool(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, sh, e, cfg := newShardEndpoint(t, pool, c.opts, c.dtmf, c.dir)
			wake := c.wake
			if c.idle != nil {
				undo := c.idle(e)
				wake = func(*Endpoint, StreamConfig) { undo() }
			}
			if c.set != nil {
				c.set(e)
			}
			var f feeder
			if wake == nil { // the event is the first packet
				wake = func(e *Endpoint, _ StreamConfig) { f.feed(e) }
			}
			for range 2 * demoteAfter {
				sh.pass(time.Now())
			}
			if p.Idle() != 1 {
				t.Fatal("not idle")
			}
			// Not just before a slow-list visit, which would promote it too.
			for (sh.passes+1)%slowEvery == 0 || (sh.passes+2)%slowEvery == 0 {
				sh.pass(time.Now())
			}
			wake(e, cfg)
			sh.pass(time.Now())
			if p.Idle() != 0 || e.pace.list != onFast {
				t.Fatal("still idle on the pass after the event")
			}
			// And it has work: it stays on the 20 ms pass.
			for range 2 * demoteAfter {
				if c.feed {
					f.feed(e)
				}
				sh.pass(time.Now())
			}
			if p.Idle() != 0 {
				t.Fatal("idle again, with work to do")
			}
		})
	}
}

// waitIdle waits until n of p's endpoints idle on the slow list.
func waitIdle(t *testing.T, p *Pacer, n int) {
	t.Helper()
	if !waitUntil(t, 3*time.Second, func() bool { return p.Idle() == n }) {
		t.Fatalf("%d endpoints idle, want %d", p.Idle(), n)
	}
}

// An idle leg that is given work is back on the 20 ms pass at once, and
// the far end hears the result: a tone played, an RFC 4733 digit sent, a
// tone the far end plays reaching a sink or tap set on the idle leg, and
// in-band digits found once a DTMF callback is set.
func TestPacerIdleWakes(t *testing.T) {
	pcmu := codec.Codecs()[0]
	cases := []struct {
		name string
		dtmf uint8
		// idle makes the leg idle (a's options are NoIdleSilence unless
		// echo); far is what the phone plays to it; then wake gives it work
		// and check proves the result at the right end.
		echo  bool
		far   func() Source
		wake  func(t *testing.T, a *Endpoint) (check func(t *testing.T, phone *capture, phoneDigits func() []rune))
		noise bool
	}{
		{name: "Play", dtmf: 101, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			a.Play(sine(1000, 0, 0), nil)
			return func(t *testing.T, phone *capture, _ func() []rune) {
				if f := heardFrequency(t, phone, 4000); f < 990 || f > 1010 {
					t.Fatalf("phone heard %.0f Hz, want 1000", f)
				}
			}
		}},
		{name: "Play on an echo leg", dtmf: 101, echo: true, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			a.Play(sine(1000, 0, 0), nil)
			return func(t *testing.T, phone *capture, _ func() []rune) {
				if f := heardFrequency(t, phone, 4000); f < 990 || f > 1010 {
					t.Fatalf("phone heard %.0f Hz, want 1000", f)
				}
			}
		}},
		{name: "SendDTMF", dtmf: 101, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			if err := a.SendDTMF('7', 80*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			return func(t *testing.T, _ *capture, digits func() []rune) {
				if !waitUntil(t, 3*time.Second, func() bool { return len(digits()) > 0 }) || string(digits()) != "7" {
					t.Fatalf("phone received digits %q, want \"7\"", string(digits()))
				}
			}
		}},
		{name: "SetSink", dtmf: 101, far: func() Source { return sine(1000, 0, 0) }, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			var got capture
			a.SetSink(&got)
			return func(t *testing.T, _ *capture, _ func() []rune) {
				if f := heardFrequency(t, &got, 4000); f < 990 || f > 1010 {
					t.Fatalf("sink heard %.0f Hz, want 1000", f)
				}
			}
		}},
		{name: "SetTaps", dtmf: 101, far: func() Source { return sine(1000, 0, 0) }, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			var got capture
			a.SetTaps(&got)
			return func(t *testing.T, _ *capture, _ func() []rune) {
				if f := heardFrequency(t, &got, 4000); f < 990 || f > 1010 {
					t.Fatalf("tap heard %.0f Hz, want 1000", f)
				}
			}
		}},
		{name: "OnDTMF with in-band digits", dtmf: 0, far: func() Source {
			s, _ := dtmfTone('5', 100*time.Millisecond, 100*time.Millisecond)
			return Loop(s.(*sequenceSource), 0)
		}, wake: func(t *testing.T, a *Endpoint) func(*testing.T, *capture, func() []rune) {
			var mu sync.Mutex
			var digits []rune
			a.OnDTMF(func(ev DTMFEvent) { mu.Lock(); digits = append(digits, ev.Digit); mu.Unlock() })
			return func(t *testing.T, _ *capture, _ func() []rune) {
				ok := waitUntil(t, 3*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(digits) >= 2 })
				mu.Lock()
				defer mu.Unlock()
				if !ok || digits[0] != '5' || digits[1] != '5' {
					t.Fatalf("idle leg detected %q, want in-band 5s", string(digits))
				}
			}
		}},
	}
	pool := idlePool(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewPacer(1)
			defer p.Close()
			a, err := NewEndpoint(pool, loopback, EndpointOptions{Pacer: p, NoIdleSilence: !c.echo})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			phone, err := NewEndpoint(pool, loopback, EndpointOptions{NoIdleSilence: true})
			if err != nil {
				t.Fatal(err)
			}
			defer phone.Close()
			a.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: c.dtmf, Remote: phone.LocalAddr()})
			phone.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: c.dtmf, Remote: a.LocalAddr()})
			var heard capture
			phone.SetSink(&heard)
			var mu sync.Mutex
			var phoneDigits []rune
			phone.OnDTMF(func(ev DTMFEvent) { mu.Lock(); phoneDigits = append(phoneDigits, ev.Digit); mu.Unlock() })
			digits := func() []rune { mu.Lock(); defer mu.Unlock(); return append([]rune(nil), phoneDigits...) }
			phone.Start()
			a.Start()
			if c.echo {
				defer Bridge(a, a)()
			}
			if c.far != nil {
				phone.Play(c.far(), nil)
			}
			waitIdle(t, p, 1)
			time.Sleep(300 * time.Millisecond) // idle for more than a slow-list visit
			if p.Idle() != 1 {
				t.Fatal("the leg did not stay idle")
			}
			check := c.wake(t, a)
			// The wake applies on the shard's next tick.
			if !waitUntil(t, time.Second, func() bool { return p.Idle() == 0 }) {
				t.Fatal("the leg stayed idle after it was given work")
			}
			check(t, &heard, digits)
		})
	}
}

// sniffedPacket is one RTP packet a raw UDP socket received.
type sniffedPacket struct {
	hdr rtp.Header
	at  time.Time
}

// rtpSniffer is a far end that records the RTP headers it receives.
type rtpSniffer struct {
	conn *net.UDPConn
	mu   sync.Mutex
	pkts []sniffedPacket
	done chan struct{}
}

func newRTPSniffer(t *testing.T) *rtpSniffer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &rtpSniffer{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 1500)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			var h rtp.Header
			if _, err := h.Unmarshal(buf[:n]); err != nil || transport.IsRTCP(buf[:n]) {
				continue
			}
			s.mu.Lock()
			s.pkts = append(s.pkts, sniffedPacket{hdr: h, at: time.Now()})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

func (s *rtpSniffer) addr() netip.AddrPort { return s.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func (s *rtpSniffer) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.pkts) }

func (s *rtpSniffer) packets() []sniffedPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sniffedPacket(nil), s.pkts...)
}

// checkClockAfterIdle checks the first packet after an idle period
// against the last one before it: the marker bit set, the next sequence
// number, and a timestamp that advanced with the wall clock (8 per ms at
// PCMU's 8 kHz, within three 20 ms frames: arrival times on a loaded box).
func checkClockAfterIdle(t *testing.T, before, after sniffedPacket) {
	t.Helper()
	if !after.hdr.Marker {
		t.Error("first packet after idling has no marker bit")
	}
	if after.hdr.SequenceNumber != before.hdr.SequenceNumber+1 {
		t.Errorf("sequence %d after %d: numbers skipped while idle", after.hdr.SequenceNumber, before.hdr.SequenceNumber)
	}
	gap := after.at.Sub(before.at)
	want := int64(gap / time.Millisecond * 8)
	got := int64(after.hdr.Timestamp - before.hdr.Timestamp)
	if d := got - want; d < -480 || d > 480 {
		t.Errorf("timestamp advanced %d over %s of idling, want ~%d (8 kHz)", got, gap.Round(time.Millisecond), want)
	}
	if gap < 900*time.Millisecond {
		t.Errorf("idle period was only %s", gap)
	}
}

// After a second idle — on hold, echo-bridged, or with nothing to play —
// the next packet's RTP timestamp has advanced by ~8,000 (PCMU) from the
// last one before, as if the clock had never stopped; it carries the
// marker bit and the next sequence number. The wake comes from
// Configure (unhold), the bridge's teardown, Play, or SendDTMF.
func TestPacerIdleClockCatchesUp(t *testing.T) {
	pcmu := codec.Codecs()[0]
	cases := []struct {
		name          string
		noIdleSilence bool
		// idle makes the sending leg idle; resume gives it work again.
		idle   func(e *Endpoint, cfg StreamConfig) (resume func())
		wantPT uint8
	}{
		{name: "hold, then unhold (Configure)", idle: func(e *Endpoint, cfg StreamConfig) func() {
			held := cfg
			held.Direction = "recvonly"
			e.Configure(held)
			return func() { e.Configure(cfg) }
		}, wantPT: pcmu.PayloadType},
		{name: "echo bridge, then its teardown", idle: func(e *Endpoint, _ StreamConfig) func() {
			return Bridge(e, e)
		}, wantPT: pcmu.PayloadType},
		{name: "prompt, then the next prompt (Play)", noIdleSilence: true, idle: func(e *Endpoint, _ StreamConfig) func() {
			return func() { e.Play(sine(1000, 200*time.Millisecond, 0), nil) }
		}, wantPT: pcmu.PayloadType},
		{name: "prompt, then a digit (SendDTMF)", noIdleSilence: true, idle: func(e *Endpoint, _ StreamConfig) func() {
			return func() { _ = e.SendDTMF('1', 100*time.Millisecond) }
		}, wantPT: 101},
	}
	pool := idlePool(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := NewPacer(1)
			defer p.Close()
			sn := newRTPSniffer(t)
			e, err := NewEndpoint(pool, loopback, EndpointOptions{Pacer: p, NoIdleSilence: c.noIdleSilence})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			cfg := StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: 101, Remote: sn.addr(), Direction: "sendrecv"}
			e.Configure(cfg)
			e.Start()
			if c.noIdleSilence {
				e.Play(sine(1000, 200*time.Millisecond, 0), nil)
			}
			if !waitUntil(t, 2*time.Second, func() bool { return sn.count() >= 8 }) {
				t.Fatalf("far end received %d packets before idling", sn.count())
			}
			resume := c.idle(e, cfg)
			waitIdle(t, p, 1)
			before := sn.count()
			time.Sleep(time.Second)
			if n := sn.count(); n != before || p.Idle() != 1 {
				t.Fatalf("%d packets sent while idle (idle endpoints: %d)", n-before, p.Idle())
			}
			resume()
			if !waitUntil(t, 2*time.Second, func() bool { return sn.count() > before }) {
				t.Fatal("nothing sent after the wake")
			}
			pk := sn.packets()
			last, first := pk[before-1], pk[before]
			if first.hdr.PayloadType != c.wantPT {
				t.Fatalf("first packet after idling has payload type %d, want %d", first.hdr.PayloadType, c.wantPT)
			}
			checkClockAfterIdle(t, last, first)
		})
	}
}

// A forwarding run that starts on an idle leg (here an echo leg whose
// phone starts talking again with a new SSRC) maps the source's
// timestamps onto the leg's clock as it would be had it kept ticking.
func TestPacerIdleForwardRunClock(t *testing.T) {
	pcmu := codec.Codecs()[0]
	p := NewPacer(1)
	defer p.Close()
	sn := newRTPSniffer(t)
	e, err := NewEndpoint(idlePool(t), loopback, EndpointOptions{Pacer: p})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, Remote: sn.addr()})
	e.Start()
	if !waitUntil(t, 2*time.Second, func() bool { return sn.count() >= 5 }) {
		t.Fatal("no silence from the answered leg")
	}
	defer Bridge(e, e)()
	waitIdle(t, p, 1)
	before := sn.count()
	time.Sleep(time.Second)
	pkt := make([]byte, 12+160)
	h := rtp.Header{Version: 2, PayloadType: pcmu.PayloadType, SequenceNumber: 100, Timestamp: 123456, SSRC: 0xfeed}
	if _, err := h.MarshalTo(pkt); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.conn.WriteToUDPAddrPort(pkt, e.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(t, 2*time.Second, func() bool { return sn.count() > before }) {
		t.Fatal("the echo leg did not reflect the packet")
	}
	pk := sn.packets()
	checkClockAfterIdle(t, pk[before-1], pk[before])
	if p.Idle() != 1 {
		t.Fatal("forwarding woke the echo leg")
	}
}

// The media timeout still fires for an idle leg that receives nothing.
func TestPacerIdleMediaTimeout(t *testing.T) {
	pcmu := codec.Codecs()[0]
	p := NewPacer(1)
	defer p.Close()
	fired := make(chan time.Time, 1)
	start := time.Now()
	e, err := NewEndpoint(idlePool(t), loopback, EndpointOptions{Pacer: p, NoIdleSilence: true,
		MediaTimeout: time.Second, OnMediaTimeout: func() { fired <- time.Now() }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
	e.Start()
	waitIdle(t, p, 1)
	select {
	case at := <-fired:
		if d := at.Sub(start); d < time.Second {
			t.Fatalf("media timeout fired after %s, want >= 1 s", d)
		}
		if p.Idle() != 1 {
			t.Fatal("the leg was woken to time out")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no media timeout for an idle leg that receives nothing")
	}
}

// An idle leg that has sent media keeps sending RTCP reports (every 1 s
// here, ±50 %), and keeps the round-trip bookkeeping: the phone's
// reports about its SRs give it an RTT.
func TestPacerIdleRTCP(t *testing.T) {
	pcmu := codec.Codecs()[0]
	pool := idlePool(t)
	p := NewPacer(1)
	defer p.Close()
	a, err := NewEndpoint(pool, loopback, EndpointOptions{Pacer: p, NoIdleSilence: true, RTCPInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	phone, err := NewEndpoint(pool, loopback, EndpointOptions{NoIdleSilence: true, RTCPInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	a.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, Remote: phone.LocalAddr()})
	phone.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, Remote: a.LocalAddr()})
	var heard capture
	phone.SetSink(&heard)
	phone.Start()
	a.Start()
	a.Play(sine(1000, 300*time.Millisecond, 0), nil)
	if f := heardFrequency(t, &heard, 1600); f < 990 || f > 1010 {
		t.Fatalf("phone heard %.0f Hz before the leg idled", f)
	}
	waitIdle(t, p, 1)
	in := phone.Stats().RTCPIn
	if !waitUntil(t, 6*time.Second, func() bool { return phone.Stats().RTCPIn >= in+3 }) {
		t.Fatalf("phone received %d RTCP reports from the idle leg in 6 s, want 3", phone.Stats().RTCPIn-in)
	}
	if p.Idle() != 1 {
		t.Fatal("the leg left the slow list to send RTCP")
	}
	if !waitUntil(t, 6*time.Second, func() bool { return a.Stats().RTTSamples > 0 }) {
		t.Fatal("no RTT measured by the idle leg")
	}
	if rtt := a.Stats().RTT; rtt > 100*time.Millisecond {
		t.Fatalf("idle leg measured an RTT of %s on loopback", rtt)
	}
}

// A change that lands while the shard demotes an endpoint — after it
// decided the endpoint was quiet, before the endpoint is on the slow
// list — is not lost: the endpoint stays on the 20 ms pass, or is woken
// on the next one.
func TestPacerDemotionMeetsWake(t *testing.T) {
	pcmu := codec.Codecs()[0]
	cases := []struct {
		name   string
		change func(e *Endpoint, src Source)
	}{
		{"Play", func(e *Endpoint, src Source) { e.Play(src, nil) }},
		{"SendDTMF", func(e *Endpoint, _ Source) { _ = e.SendDTMF('3', 0) }},
		{"SetSink", func(e *Endpoint, _ Source) { e.SetSink(&capture{}) }},
	}
	pool := idlePool(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPacer(1, false)
			defer p.Close()
			sh := p.shards[0]
			e, err := NewEndpoint(pool, loopback, EndpointOptions{Pacer: p, NoIdleSilence: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			e.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: 101, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
			e.Start()
			src := &countingSource{pass: new(atomic.Int64)}
			hooked := 0
			sh.testHookDemote = func(e *Endpoint) {
				if hooked++; hooked == 1 {
					c.change(e, src)
				}
			}
			for range demoteAfter + 1 {
				sh.pass(time.Now())
			}
			if hooked == 0 {
				t.Fatal("the shard never tried to demote the quiet endpoint")
			}
			sh.pass(time.Now()) // not a slow-list visit (passes < slowEvery)
			if sh.passes >= slowEvery {
				t.Fatal("test ran into a slow-list visit")
			}
			if p.Idle() != 0 || e.pace.list != onFast {
				t.Fatal("demoted although its work arrived during the demotion: the wake was lost")
			}
			if c.name == "Play" && src.n.Load() == 0 {
				t.Fatal("the playback was not read")
			}
		})
	}
}

// countingSource counts the frames read from it: proof that the
// endpoint playing it is ticked.
type countingSource struct {
	n     atomic.Int64
	pass  *atomic.Int64 // the pass running
	first atomic.Int64  // the pass of the first read
}

func (s *countingSource) ReadFrame(f *Frame) error {
	if s.n.Add(1) == 1 {
		s.first.Store(s.pass.Load())
	}
	out, err := f.Fit()
	clear(out)
	return err
}

// Wakes racing with demotion are never lost: a shard passing as fast as
// it can (demoting the endpoint whenever it has been quiet for
// demoteAfter passes) while another goroutine plays, stops, sets and
// clears sinks and DTMF callbacks; after every Play the source is read.
func TestPacerWakeNeverLost(t *testing.T) {
	pcmu := codec.Codecs()[0]
	p := newPacer(1, false)
	defer p.Close()
	sh := p.shards[0]
	e, err := NewEndpoint(idlePool(t), loopback, EndpointOptions{Pacer: p, NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Configure(StreamConfig{Codec: pcmu, PayloadType: pcmu.PayloadType, DTMFPayloadType: 101, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
	e.Start()
	stop := make(chan struct{})
	var passes, current atomic.Int64 // passes finished; the pass running
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			current.Add(1)
			sh.pass(time.Now())
			passes.Add(1)
			// Give the other goroutine the processor now and then, so
			// wakes meet every stage of the pass.
			if passes.Load()%8 == 0 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	var sink capture
	var demoted int
	for i := range 1000 {
		switch i % 3 {
		case 1:
			e.SetSink(&sink)
			e.SetSink(nil)
		case 2:
			e.OnDTMF(func(DTMFEvent) {})
			e.OnDTMF(nil)
		}
		if p.Idle() == 1 {
			demoted++
		}
		src := &countingSource{pass: &current}
		stopPlay := e.Play(src, nil)
		played := current.Load()
		for end := time.Now().Add(2 * time.Second); src.n.Load() == 0 && time.Now().Before(end); {
			time.Sleep(20 * time.Microsecond)
		}
		if src.n.Load() == 0 {
			t.Fatalf("round %d: the source was never read (idle: %d): a wake was lost", i, p.Idle())
		}
		// The pass running when Play returned, or the next one, reads it;
		// a lost wake would wait for the slow list's visit.
		if first := src.first.Load(); first > played+1 {
			t.Fatalf("round %d: played during pass %d, first read in pass %d: the wake was late", i, played, first)
		}
		stopPlay()
		// Let it be quiet for a few passes, about long enough to demote.
		for n := passes.Load(); passes.Load() < n+int64(i%(2*demoteAfter)); {
			time.Sleep(20 * time.Microsecond)
		}
	}
	if demoted == 0 {
		t.Fatal("the endpoint was never demoted: the test raced nothing")
	}
}

// The RTP clock of an idle endpoint is where 20 ms ticks would have
// taken it, counted from when it went idle however often it is asked.
func TestOutStateCatchUp(t *testing.T) {
	base := time.Unix(1000, 0)
	cases := []struct {
		name  string
		after time.Duration
		step  uint32
		want  uint32
	}{
		{"at once", 0, 160, 1000},
		{"within the first tick", 19 * time.Millisecond, 160, 1000},
		{"one tick", 20 * time.Millisecond, 160, 1160},
		{"one second, PCMU", time.Second, 160, 1000 + 8000},
		{"one second, G.722 (8 kHz clock)", time.Second, 160, 1000 + 8000},
		{"one second, Opus", time.Second, 960, 1000 + 48000},
		{"clock read before the idle start", -time.Second, 160, 1000},
		{"wraps", 100 * time.Hour, 960, truncate32(1000 + uint64(100*3600*50)*960)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var o outState
			o.clockTS = 1000
			o.pause(base, c.step)
			if got := o.clockAt(base.Add(c.after)); got != c.want {
				t.Fatalf("clock %d, want %d", got, c.want)
			}
			// Asking again, earlier, neither keeps nor loses time.
			if got := o.clockAt(base.Add(c.after / 2)); c.after > 0 && got != 1000+uint32(c.after/2/(20*time.Millisecond))*c.step {
				t.Fatalf("asked again at half the time: clock %d", got)
			}
			o.resume(base.Add(c.after))
			if o.idle || o.clockTS != c.want {
				t.Fatalf("after resume: idle %v, clock %d, want %d", o.idle, o.clockTS, c.want)
			}
			if _, ts := o.tick(c.step, true); ts != c.want {
				t.Fatalf("first tick after resume has timestamp %d, want %d", ts, c.want)
			}
		})
	}
}

// truncate32 is uint32(v) for a value that does not fit (which a
// constant conversion refuses).
func truncate32(v uint64) uint32 { return uint32(v) }

// feeder hands an endpoint PCMU packets as its transport's reader would,
// one 20 ms frame each, numbered on from the last.
type feeder struct {
	seq uint16
	buf []byte
}

func (f *feeder) feed(e *Endpoint) {
	if f.buf == nil {
		f.buf = make([]byte, 12+160)
		for i := 12; i < len(f.buf); i++ {
			f.buf[i] = 0xff // µ-law silence
		}
	}
	f.buf[0], f.buf[1] = 0x80, 0 // version 2, PCMU
	binary.BigEndian.PutUint16(f.buf[2:], f.seq)
	binary.BigEndian.PutUint32(f.buf[4:], uint32(f.seq)*160)
	binary.BigEndian.PutUint32(f.buf[8:], 0x5eed)
	f.seq++
	(*streamReceiver)(e).ReceiveRTP(f.buf)
}
