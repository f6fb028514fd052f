package media

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// Flags of BenchmarkBridgedCalls (only read when -bench selects it).
var (
	loadCalls  = flag.String("bridge.calls", "250,500,1000,2000", "comma-separated numbers of bridged calls for BenchmarkBridgedCalls")
	loadWindow = flag.Duration("bridge.window", 4*time.Second, "measurement window of each BenchmarkBridgedCalls phase")
	loadPoll   = flag.Duration("bridge.poll", 0, "BenchmarkEpollForwarderPrototype: 0 blocks in epoll_wait; otherwise poll without blocking and sleep this long whenever the sockets are drained (coalesced wake-ups)")
	loadProc   = flag.Bool("bridge.genproc", false, "run the phones of the bridged phase in a child process: the server's CPU is then the benchmark process's own, and -cpu sets the server's GOMAXPROCS alone")
)

// BenchmarkBridgedCalls loads the passthrough bridge with N real calls over
// loopback UDP. Each call is two endpoints (sharing one Pacer, as the SIP
// agent runs them) bridged with Bridge, and two "phones" that send 50
// G.711 packets/s each way with a send timestamp in the payload. The phones
// are a few shared UDP sockets per side, each sending to many endpoints, so
// the load generator stays cheap.
//
// Each N runs two phases with the same generator and the same schedule:
//
//   - direct: phone X sends straight to phone Y (no server), which measures
//     the generator's own CPU and the loopback latency;
//   - bridged: X -> endpoint A -> (forward) -> endpoint B -> Y and back.
//
// The server's CPU per forwarded packet is the process CPU (getrusage) of
// the bridged phase minus that of the direct phase, divided by the packets
// forwarded. The generator's sendto on loopback also pays for delivering
// to the receiving socket, so the difference is what the server adds: its
// recvfrom (plus the EAGAIN retry and the netpoller wake-up), the header
// rewrite and its sendto including delivery to the phone. With
// -bridge.genproc the phones of the bridged phase run in a child process
// instead, and the server's CPU is simply this process's CPU over the
// window; -cpu then sets the server's GOMAXPROCS alone.
//
// Reported per N: loss (%), one-way latency p50/p99 (µs, far phone's
// receive time minus send time) of both phases, server CPU µs/packet,
// server memory per bridged call (Go heap+stacks, and RSS), and after all
// calls close, whether goroutines and heap are back to the baseline (the
// benchmark fails if they are not).
//
//	go test -run XXX -bench BridgedCalls -benchtime 1x -cpu 1 ./media/ \
//	    -args -bridge.calls=500,1000 -bridge.window=3s -bridge.genproc
func BenchmarkBridgedCalls(b *testing.B) {
	for _, f := range strings.Split(*loadCalls, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 8000 {
			b.Fatalf("bad -bridge.calls entry %q (1..8000)", f)
		}
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			for b.Loop() { // one op = the whole two-phase run; use -benchtime 1x
				runBridgedCalls(b, n, *loadWindow, newBridgedCalls)
			}
		})
	}
}

// The load harness itself, small: 20 bridged calls forward every packet
// both ways, and goroutines and memory return to the baseline when the
// calls close (runBridgedCalls fails the test otherwise).
func TestBridgedCallsHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("sets up 20 bridged calls over loopback for ~2 s")
	}
	res := runBridgedCalls(t, 20, 300*time.Millisecond, newBridgedCalls)
	// 20 calls x 2 directions x 50 packets/s x 0.3 s
	if res.sent < 500 || res.got != res.sent {
		t.Fatalf("sent %d, received %d: want every packet through the bridges", res.sent, res.got)
	}
	if res.strays != 0 || res.sendErrs != 0 {
		t.Fatalf("%d stray packets, %d send errors", res.strays, res.sendErrs)
	}
}

// BenchmarkEpollForwarderPrototype runs the same load through a bare
// forwarder that is not the media engine: raw non-blocking sockets, one
// loop per P over a level-triggered epoll set, one read and one sendto per
// packet, no goroutine per socket. It shows what a shared receive loop
// would save against Endpoint's goroutine-per-socket reader (same flags,
// e.g. -bridge.calls=500,1000).
func BenchmarkEpollForwarderPrototype(b *testing.B) {
	for _, f := range strings.Split(*loadCalls, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n > 8000 {
			b.Fatalf("bad -bridge.calls entry %q (1..8000)", f)
		}
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			for b.Loop() {
				runBridgedCalls(b, n, *loadWindow, newEpollForwarder)
			}
		})
	}
}

const (
	loadPhoneSockets = 4  // shared phone sockets per side
	loadSlots        = 20 // the 20 ms period is split in 1 ms send slots
	loadPayload      = 160
	// payload layout: magic (1), call index (4), direction (1), phase (1),
	// pad (1), send time in ns since the generator's start (8).
	loadMagic = 0x5b
)

// loadPhones is the traffic generator: loadPhoneSockets sockets for side X
// and as many for side Y; call i uses socket i%loadPhoneSockets on each side.
type loadPhones struct {
	n     int
	x, y  []*net.UDPConn
	start time.Time
	sent  [2]atomic.Uint64
	errs  atomic.Uint64
	recv  []*loadReceiver
	seq   []uint16 // per call and direction: [2*i+dir]
	dstX  []netip.AddrPort
	dstY  []netip.AddrPort
	// peers is where the phones' packets may come from (every dstX and
	// dstY), set by measure: a packet from any other address is another
	// test's traffic to a reused ephemeral port, counted apart.
	peers  atomic.Pointer[map[netip.AddrPort]struct{}]
	wg     sync.WaitGroup
	stopRx atomic.Bool
}

type loadReceiver struct {
	conn  *net.UDPConn
	start time.Time
	got   atomic.Uint64 // packets of the measured window; read while draining
	// written by the receiver goroutine only; read after it stopped.
	stray   uint64 // from a peer, but not one of our packets
	foreign uint64 // from an address that is no peer
	hist    latencyHist
}

// latencyHist counts one-way latencies: 1 µs buckets below 10 ms, then
// 1 ms buckets up to 1 s.
type latencyHist struct {
	b [10000 + 990 + 1]uint32
	n uint64
}

func (h *latencyHist) add(d time.Duration) {
	us := int(d / time.Microsecond)
	i := us
	switch {
	case us < 0:
		i = 0
	case us >= 10000:
		i = min(10000+(us-10000)/1000, len(h.b)-1)
	}
	h.b[i]++
	h.n++
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, v := range o.b {
		h.b[i] += v
	}
	h.n += o.n
}

// quantile returns the upper edge of the bucket holding quantile q.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint64(q * float64(h.n))
	var acc uint64
	for i, v := range h.b {
		acc += uint64(v)
		if acc > want {
			if i < 10000 {
				return time.Duration(i+1) * time.Microsecond
			}
			return time.Duration(10000+(i-10000+1)*1000) * time.Microsecond
		}
	}
	return time.Second
}

func newLoadPhones(b testing.TB, n int) *loadPhones {
	p := &loadPhones{n: n, start: time.Now(), seq: make([]uint16, 2*n),
		dstX: make([]netip.AddrPort, n), dstY: make([]netip.AddrPort, n)}
	lo := netip.MustParseAddr("127.0.0.1")
	for range loadPhoneSockets {
		for _, side := range []*[]*net.UDPConn{&p.x, &p.y} {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
			if err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadBuffer(4 << 20)
			_ = c.SetWriteBuffer(4 << 20)
			*side = append(*side, c)
			r := &loadReceiver{conn: c, start: p.start}
			p.recv = append(p.recv, r)
		}
	}
	for _, r := range p.recv {
		p.wg.Add(1)
		go p.receive(r)
	}
	return p
}

// loadElsewhere is where endpoints first send when the phones are in a
// child process: the discard port; symmetric RTP latches onto the real
// phone during the warm-up.
var loadElsewhere = netip.MustParseAddrPort("127.0.0.1:9")

func (p *loadPhones) addrX(i int) netip.AddrPort {
	if len(p.x) == 0 {
		return loadElsewhere
	}
	return p.x[i%loadPhoneSockets].LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *loadPhones) addrY(i int) netip.AddrPort {
	if len(p.y) == 0 {
		return loadElsewhere
	}
	return p.y[i%loadPhoneSockets].LocalAddr().(*net.UDPAddr).AddrPort()
}

func (p *loadPhones) receive(r *loadReceiver) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for !p.stopRx.Load() {
		_ = r.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed
		}
		now := time.Since(r.start)
		if peers := p.peers.Load(); peers == nil {
			r.foreign++
			continue
		} else if _, ok := (*peers)[from]; !ok {
			r.foreign++
			continue
		}
		if n >= 8 && buf[1] >= 192 && buf[1] <= 223 {
			continue // RTCP (RFC 5761): the endpoints' first reports come 1.25–3.75 s in
		}
		if n != 12+loadPayload || buf[12] != loadMagic {
			r.stray++
			continue
		}
		pl := buf[12:]
		if pl[6] != 2 {
			continue // sent during warm-up
		}
		r.got.Add(1)
		r.hist.add(now - time.Duration(binary.BigEndian.Uint64(pl[8:])))
	}
}

// run sends 50 packets/s per call and direction for d, tagging packets with
// phase, and returns when the last slot is sent. Sends are spread over
// 1 ms slots so the load is smooth, like independent phones.
func (p *loadPhones) run(d time.Duration, phase uint8) {
	var wg sync.WaitGroup
	t0 := time.Now()
	ticks := int(d / time.Millisecond)
	for dir := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			socks, dsts := p.x, p.dstX
			if dir == 1 {
				socks, dsts = p.y, p.dstY
			}
			pkt := make([]byte, 12+loadPayload)
			pkt[0], pkt[1] = 0x80, 0 // V=2, PT 0 (PCMU)
			for k := range ticks {
				if wait := time.Until(t0.Add(time.Duration(k) * time.Millisecond)); wait > 0 {
					time.Sleep(wait)
				}
				for i := k % loadSlots; i < p.n; i += loadSlots {
					s := &p.seq[2*i+dir]
					*s++
					binary.BigEndian.PutUint16(pkt[2:], *s)
					binary.BigEndian.PutUint32(pkt[4:], uint32(*s)*160)
					binary.BigEndian.PutUint32(pkt[8:], uint32(2*i+dir+1))
					pl := pkt[12:]
					pl[0] = loadMagic
					binary.BigEndian.PutUint32(pl[1:], uint32(i))
					pl[5], pl[6] = uint8(dir), phase
					binary.BigEndian.PutUint64(pl[8:], uint64(time.Since(p.start)))
					if _, err := socks[i%loadPhoneSockets].WriteToUDPAddrPort(pkt, dsts[i]); err != nil {
						p.errs.Add(1)
						continue
					}
					p.sent[dir].Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

func (p *loadPhones) close() {
	for _, c := range append(append([]*net.UDPConn(nil), p.x...), p.y...) {
		c.Close()
	}
}

// phaseResult is what one phase measured.
type phaseResult struct {
	sent, got        uint64
	p50, p99         time.Duration
	user, sys        time.Duration
	sendErrs, strays uint64
	foreign          uint64 // packets from addresses that are no peer, not counted
}

func (r phaseResult) loss() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * float64(int64(r.sent)-int64(r.got)) / float64(r.sent)
}

func (r phaseResult) cpu() time.Duration { return r.user + r.sys }

func rusage() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// measure runs warm-up then the measured window (phase 2) on fresh phones
// and returns the window's numbers. Receivers count only packets sent in
// the window; they stop once every packet of the window arrived, or 2 s
// after the last send (the sockets stay open until close). mark, if set,
// is called as the window starts and ends.
func (p *loadPhones) measure(window time.Duration, mark func(start bool)) phaseResult {
	peers := make(map[netip.AddrPort]struct{}, 2*p.n)
	for i := range p.n {
		peers[p.dstX[i]] = struct{}{}
		peers[p.dstY[i]] = struct{}{}
	}
	p.peers.Store(&peers)
	// warm-up: latching, page faults, goroutine stacks
	p.run(min(time.Second, max(200*time.Millisecond, window/3)), 1)
	s0 := p.sent[0].Load() + p.sent[1].Load()
	e0 := p.errs.Load()
	if mark != nil {
		mark(true)
	}
	u0, k0 := rusage()
	p.run(window, 2)
	u1, k1 := rusage()
	if mark != nil {
		mark(false)
	}
	sent := p.sent[0].Load() + p.sent[1].Load() - s0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		var got uint64
		for _, r := range p.recv {
			got += r.got.Load()
		}
		if got >= sent {
			break
		}
	}
	p.stopRx.Store(true)
	p.wg.Wait() // receivers stop within their 100 ms read deadline
	var res phaseResult
	var h latencyHist
	for _, r := range p.recv {
		res.got += r.got.Load()
		res.strays += r.stray
		res.foreign += r.foreign
		h.merge(&r.hist)
	}
	res.sent = sent
	res.sendErrs = p.errs.Load() - e0
	res.p50, res.p99 = h.quantile(0.50), h.quantile(0.99)
	res.user, res.sys = u1-u0, k1-k0
	return res
}

type memPoint struct {
	heapStack uint64 // HeapInuse + StackInuse
	rss       uint64
	gor       int
}

func memNow() memPoint {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memPoint{heapStack: ms.HeapInuse + ms.StackInuse, rss: rssBytes(), gor: runtime.NumGoroutine()}
}

// rssBytes reads the resident set size from /proc/self/statm (0 where
// there is none).
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// loadServer is what forwards the phones' packets in the bridged phase.
type loadServer interface {
	close()
	// counters returns packets sent and packets dropped since the start.
	counters() (out, dropped uint64)
}

// runBridgedCalls runs both phases for n calls and returns what the bridged
// phase measured. Under a benchmark it reports the metrics; it fails tb
// when goroutines or memory are not back to the baseline.
func runBridgedCalls(b testing.TB, n int, window time.Duration, newServer func(int, *loadPhones) (loadServer, error)) phaseResult {
	load0 := loadAvg()
	// Phase 1: direct, phone to phone, no server.
	direct := newLoadPhones(b, n)
	for i := range n {
		direct.dstX[i] = direct.addrY(i)
		direct.dstY[i] = direct.addrX(i)
	}
	dres := direct.measure(window, nil)
	direct.close()

	// Phase 2: through N passthrough bridges.
	var phones *loadPhones
	if *loadProc {
		phones = &loadPhones{n: n, dstX: make([]netip.AddrPort, n), dstY: make([]netip.AddrPort, n)}
	} else {
		phones = newLoadPhones(b, n)
	}
	// A first set of N calls, set up and closed without traffic, brings
	// the runtime to its high-water mark: it keeps the descriptors (and
	// some stacks) of dead goroutines for reuse, ~0.7 KiB per goroutine
	// that ever ran at once. The baseline is taken after it, so what the
	// measured run leaves behind is a real leak.
	pre := memNow()
	warm, err := newServer(n, phones)
	time.Sleep(100 * time.Millisecond) // let every reader goroutine park
	warmSetup := memNow()              // RSS per call is taken from this cold run
	warm.close()
	if err != nil {
		b.Fatal(err)
	}
	warm = nil
	base := memNow()
	calls, err := newServer(n, phones)
	if err != nil {
		calls.close()
		b.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let every reader goroutine park
	setup := memNow()
	var bres phaseResult
	if *loadProc {
		bres = measureInChild(b, phones, window)
	} else {
		bres = phones.measure(window, nil)
	}
	busy := memNow()
	fwd, dropped := calls.counters()
	calls.close()
	calls = nil
	// Back to baseline: goroutines at once (Close waits for them), the
	// heap after a GC. Bounded wait for the runtime to settle.
	// The phones' receiver goroutines have stopped since the baseline;
	// their sockets and histograms are still alive.
	wantGor := base.gor - len(phones.recv)
	var after memPoint
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after = memNow()
		if after.gor <= wantGor && after.heapStack <= base.heapStack+512<<10 || time.Now().After(end) {
			break
		}
	}
	debug.FreeOSMemory()
	rssAfter := rssBytes()
	phones.close()

	perCall := float64(int64(setup.heapStack)-int64(base.heapStack)) / float64(n) / 1024
	rssPerCall := float64(int64(warmSetup.rss)-int64(pre.rss)) / float64(n) / 1024
	srvCPU := bres.cpu() - dres.cpu()
	if *loadProc {
		srvCPU = bres.cpu() // the process is only the server
	}
	perPkt := float64(srvCPU) / float64(max(bres.got, 1)) / 1e3 // µs
	if bb, ok := b.(*testing.B); ok {
		bb.ReportMetric(bres.loss(), "loss-%")
		bb.ReportMetric(float64(bres.p50)/1e3, "p50-µs")
		bb.ReportMetric(float64(bres.p99)/1e3, "p99-µs")
		bb.ReportMetric(float64(dres.p99)/1e3, "direct-p99-µs")
		bb.ReportMetric(perPkt, "srv-cpu-µs/pkt")
		bb.ReportMetric(perCall, "KiB/call")
	}
	b.Logf("N=%d GOMAXPROCS=%d window=%s; load average before %s, after %s (other processes share the CPUs)", n, runtime.GOMAXPROCS(0), window, load0, loadAvg())
	b.Logf("direct : sent %d got %d loss %.3f%% p50 %s p99 %s cpu %s (user %s sys %s) = %.2f µs per packet sent+received",
		dres.sent, dres.got, dres.loss(), dres.p50, dres.p99, dres.cpu(), dres.user, dres.sys, float64(dres.cpu())/float64(max(dres.got, 1))/1e3)
	b.Logf("bridged: sent %d got %d loss %.3f%% p50 %s p99 %s cpu %s (user %s sys %s); send errors %d, strays %d, endpoint drops %d, packets from elsewhere ignored %d",
		bres.sent, bres.got, bres.loss(), bres.p50, bres.p99, bres.cpu(), bres.user, bres.sys, bres.sendErrs, bres.strays, dropped, dres.foreign+bres.foreign)
	b.Logf("server : %s CPU for %d forwarded packets (%d by endpoint counters, incl. warm-up) = %.2f µs/packet; at that cost one core forwards %.0f calls (100 packets/s each)",
		srvCPU, bres.got, fwd, perPkt, 1e6/(perPkt*100))
	b.Logf("memory : heap+stacks %.1f MiB -> %.1f MiB after setup (%.1f KiB/call), %.1f MiB under load; RSS (first setup, cold) %.1f -> %.1f MiB (%.1f KiB/call), %.1f MiB under load",
		mib(base.heapStack), mib(setup.heapStack), perCall, mib(busy.heapStack), mib(pre.rss), mib(warmSetup.rss), rssPerCall, mib(busy.rss))
	b.Logf("after close: goroutines %d (baseline %d), heap+stacks %.1f MiB (baseline %.1f), RSS %.1f MiB after FreeOSMemory",
		after.gor, wantGor, mib(after.heapStack), mib(base.heapStack), mib(rssAfter))
	if after.gor > wantGor {
		b.Errorf("goroutines not back to baseline: %d > %d", after.gor, wantGor)
	}
	if after.heapStack > base.heapStack+512<<10 {
		b.Errorf("heap+stacks not back to baseline: %.1f MiB > %.1f MiB + 0.5", mib(after.heapStack), mib(base.heapStack))
	}
	return bres
}

// loadAvg returns the 1-minute load average ("?" where there is none).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

// bridgedCalls are N calls of two endpoints bridged in passthrough, on a
// pacer of their own, pointed at the phones.
type bridgedCalls struct {
	pacer    *Pacer
	eps      []*Endpoint
	unbridge []func()
}

func newBridgedCalls(n int, phones *loadPhones) (loadServer, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := transport.NewPortPool(61000, 65534) // above the ephemeral ports and every other test's RTP: strays from them would count as loss
	if err != nil {
		return nil, err
	}
	calls := &bridgedCalls{pacer: NewPacer(0)}
	ip := netip.MustParseAddr("127.0.0.1")
	c := codec.Codecs()[0]
	opts := EndpointOptions{Pacer: calls.pacer, NoIdleSilence: true, Logger: log}
	for i := range n {
		a, err := NewEndpoint(pool, ip, opts)
		if err != nil {
			return calls, fmt.Errorf("call %d: %w (ulimit -n?)", i, err)
		}
		calls.eps = append(calls.eps, a)
		bb, err := NewEndpoint(pool, ip, opts)
		if err != nil {
			return calls, fmt.Errorf("call %d: %w (ulimit -n?)", i, err)
		}
		calls.eps = append(calls.eps, bb)
		a.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, DTMFPayloadType: 101, Remote: phones.addrX(i)})
		bb.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, DTMFPayloadType: 101, Remote: phones.addrY(i)})
		a.Start()
		bb.Start()
		calls.unbridge = append(calls.unbridge, Bridge(a, bb))
		phones.dstX[i] = a.LocalAddr()
		phones.dstY[i] = bb.LocalAddr()
	}
	return calls, nil
}

func (c *bridgedCalls) counters() (out, dropped uint64) {
	for _, e := range c.eps {
		st := e.Stats()
		out += st.PacketsOut
		dropped += st.Dropped
	}
	return out, dropped
}

func (c *bridgedCalls) close() {
	if c == nil {
		return
	}
	for _, u := range c.unbridge {
		u()
	}
	for _, e := range c.eps {
		e.Close()
	}
	c.pacer.Close()
}

// BenchmarkLoopbackUDPFloor measures the kernel floor under the forwarding
// cost on this machine, through the Go runtime as the endpoints use it:
//
//   - sendto+recvfrom: one packet sent with an address and read back, the
//     two syscalls every forwarded packet needs (on loopback the sendto
//     also runs the receive path into the destination socket);
//   - connected: the same with the sending socket connected, which saves
//     the route lookup per packet;
//   - recvfrom-EAGAIN: the read of an empty socket that Go's netpoller
//     makes after each packet before the reader parks.
func BenchmarkLoopbackUDPFloor(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	pair := func(b *testing.B) (s, r *net.UDPConn) {
		var err error
		if s, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0))); err != nil {
			b.Fatal(err)
		}
		if r, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0))); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close(); r.Close() })
		return s, r
	}
	pkt := make([]byte, 12+160)
	buf := make([]byte, 1500)
	b.Run("sendto+recvfrom", func(b *testing.B) {
		s, r := pair(b)
		to := r.LocalAddr().(*net.UDPAddr).AddrPort()
		for b.Loop() {
			if _, err := s.WriteToUDPAddrPort(pkt, to); err != nil {
				b.Fatal(err)
			}
			if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("connected-send+recvfrom", func(b *testing.B) {
		s, r := pair(b)
		to := r.LocalAddr().(*net.UDPAddr).AddrPort()
		rc, err := s.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		var cerr error
		_ = rc.Control(func(fd uintptr) {
			cerr = syscall.Connect(int(fd), &syscall.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
		})
		if cerr != nil {
			b.Fatal(cerr)
		}
		for b.Loop() {
			if _, err := s.Write(pkt); err != nil {
				b.Fatal(err)
			}
			if _, _, err := r.ReadFromUDPAddrPort(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("recvfrom-EAGAIN", func(b *testing.B) {
		_, r := pair(b)
		rc, err := r.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) {
			for b.Loop() {
				if _, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT); err != syscall.EAGAIN {
					b.Fatalf("recvfrom on an empty socket: %v", err)
				}
			}
		})
	})
}

// epollForwarder is the prototype of BenchmarkEpollForwarderPrototype:
// per call two raw UDP sockets; a packet read on one goes out of the
// other to the far phone with its SSRC and payload type rewritten.
type epollForwarder struct {
	fds   []int
	epfds []int
	route map[int]*fwdRoute // fd -> where its packets go; read-only while running
	out   atomic.Uint64
	drop  atomic.Uint64
	stop  atomic.Bool
	wg    sync.WaitGroup
}

type fwdRoute struct {
	peer   int                    // the call's other socket: packets leave from it
	remote *syscall.SockaddrInet4 // the phone of this socket, latched from its first packet
	ssrc   uint32
}

func newEpollForwarder(n int, phones *loadPhones) (loadServer, error) {
	f := &epollForwarder{route: make(map[int]*fwdRoute, 2*n)}
	open := func() (int, netip.AddrPort, error) {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, netip.AddrPort{}, err
		}
		f.fds = append(f.fds, fd)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return -1, netip.AddrPort{}, err
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			return -1, netip.AddrPort{}, err
		}
		in4 := sa.(*syscall.SockaddrInet4)
		return fd, netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)), nil
	}
	loops := runtime.GOMAXPROCS(0)
	for range loops {
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return f, err
		}
		f.epfds = append(f.epfds, ep)
	}
	for i := range n {
		a, aAddr, err := open()
		if err != nil {
			return f, fmt.Errorf("call %d: %w (ulimit -n?)", i, err)
		}
		bfd, bAddr, err := open()
		if err != nil {
			return f, fmt.Errorf("call %d: %w (ulimit -n?)", i, err)
		}
		f.route[a] = &fwdRoute{peer: bfd, ssrc: uint32(2*i + 2)}
		f.route[bfd] = &fwdRoute{peer: a, ssrc: uint32(2*i + 1)}
		ep := f.epfds[i%loops]
		for _, fd := range []int{a, bfd} {
			if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
				return f, err
			}
		}
		phones.dstX[i] = aAddr
		phones.dstY[i] = bAddr
	}
	for _, ep := range f.epfds {
		f.wg.Add(1)
		go f.loop(ep)
	}
	return f, nil
}

func (f *epollForwarder) loop(ep int) {
	defer f.wg.Done()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 1500)
	timeout := 100 // ms; bounded: re-checks stop every 100 ms
	if *loadPoll > 0 {
		timeout = 0
	}
	for !f.stop.Load() {
		n, err := syscall.EpollWait(ep, events, timeout)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			r := f.route[fd]
			var m uintptr
			if r.remote == nil {
				// Latch onto the first sender (syscall.Recvfrom
				// allocates the address, so only this once).
				n, from, err := syscall.Recvfrom(fd, buf, syscall.MSG_DONTWAIT)
				in4, ok := from.(*syscall.SockaddrInet4)
				if err != nil || !ok {
					continue
				}
				r.remote, m = in4, uintptr(n)
			} else {
				// read(2): the prototype does not check the source.
				n, _, errno := syscall.Syscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
				if errno != 0 {
					continue
				}
				m = n
			}
			out := f.route[r.peer]
			if out.remote == nil || m < 12 || buf[0]>>6 != 2 {
				f.drop.Add(1) // malformed, or the far phone not heard from yet
				continue
			}
			pkt := buf[:m]
			pkt[1] &= 0x80 // keep the marker, payload type 0
			binary.BigEndian.PutUint32(pkt[8:], out.ssrc)
			if err := syscall.Sendto(r.peer, pkt, 0, out.remote); err != nil {
				continue
			}
			f.out.Add(1)
		}
		if *loadPoll > 0 && n < len(events) {
			// Drained: sleep instead of waking per packet. Level
			// triggered, so what arrives meanwhile is found next round.
			time.Sleep(*loadPoll)
		}
	}
}

func (f *epollForwarder) counters() (out, dropped uint64) { return f.out.Load(), f.drop.Load() }

func (f *epollForwarder) close() {
	if f == nil {
		return
	}
	f.stop.Store(true)
	f.wg.Wait()
	for _, fd := range append(f.fds, f.epfds...) {
		syscall.Close(fd)
	}
}

// measureInChild runs the phones of the bridged phase in a child process
// (this test binary running TestLoadGeneratorProcess) and measures this
// process's CPU over the child's measured window.
func measureInChild(b testing.TB, phones *loadPhones, window time.Duration) phaseResult {
	ctx, cancel := context.WithTimeout(context.Background(), window+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLoadGeneratorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SB_LOADGEN=1", fmt.Sprintf("SB_LOADGEN_N=%d", phones.n), "SB_LOADGEN_WINDOW="+window.String())
	var in strings.Builder
	for i := range phones.n {
		fmt.Fprintf(&in, "%s %s\n", phones.dstX[i], phones.dstY[i])
	}
	cmd.Stdin = strings.NewReader(in.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var res phaseResult
	var u0, k0, u1, k1 time.Duration
	var p50, p99 int64
	gotResult := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		switch f := strings.Fields(sc.Text()); {
		case len(f) == 2 && f[0] == "loadgen" && f[1] == "start":
			u0, k0 = rusage()
		case len(f) == 2 && f[0] == "loadgen" && f[1] == "end":
			u1, k1 = rusage()
		case len(f) == 9 && f[0] == "loadgen" && f[1] == "result":
			_, err := fmt.Sscan(strings.Join(f[2:], " "), &res.sent, &res.got, &p50, &p99, &res.sendErrs, &res.strays, &res.foreign)
			gotResult = err == nil
		}
	}
	if err := cmd.Wait(); err != nil || !gotResult {
		b.Fatalf("load generator process: %v (result line seen: %v)", err, gotResult)
	}
	res.p50, res.p99 = time.Duration(p50), time.Duration(p99)
	res.user, res.sys = u1-u0, k1-k0
	return res
}

// TestLoadGeneratorProcess is the child process of BenchmarkBridgedCalls
// -bridge.genproc: the phones, sending to the endpoint addresses read from
// standard input, reporting on standard output.
func TestLoadGeneratorProcess(t *testing.T) {
	if os.Getenv("SB_LOADGEN") != "1" {
		t.Skip("helper process of BenchmarkBridgedCalls -bridge.genproc")
	}
	n, err := strconv.Atoi(os.Getenv("SB_LOADGEN_N"))
	if err != nil || n <= 0 {
		t.Fatalf("SB_LOADGEN_N: %v", err)
	}
	window, err := time.ParseDuration(os.Getenv("SB_LOADGEN_WINDOW"))
	if err != nil || window <= 0 || window > time.Minute {
		t.Fatalf("SB_LOADGEN_WINDOW: %v", err)
	}
	p := newLoadPhones(t, n)
	defer p.close()
	sc := bufio.NewScanner(os.Stdin)
	for i := range n {
		if !sc.Scan() {
			t.Fatalf("%d endpoint address lines on stdin, want %d", i, n)
		}
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			t.Fatalf("bad line %q", sc.Text())
		}
		var err1, err2 error
		p.dstX[i], err1 = netip.ParseAddrPort(f[0])
		p.dstY[i], err2 = netip.ParseAddrPort(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
	}
	res := p.measure(window, func(start bool) {
		if start {
			fmt.Println("loadgen start")
		} else {
			fmt.Println("loadgen end")
		}
	})
	fmt.Printf("loadgen result %d %d %d %d %d %d %d\n", res.sent, res.got, int64(res.p50), int64(res.p99), res.sendErrs, res.strays, res.foreign)
}
