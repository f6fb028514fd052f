//go:build linux

package media

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
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

var (
	echoStreamsFlag = flag.String("echo.streams", "500,1000", "comma-separated numbers of echo streams for BenchmarkEchoVsFloor (even)")
	echoServers     = flag.String("echo.servers", "floor-go,floor-raw,floor-epoll,engine", "BenchmarkEchoVsFloor: which servers to measure, in this order (floor-go, floor-raw, floor-epoll, engine)")
)

// BenchmarkEchoVsFloor measures the CPU the media engine spends per RTP
// packet on the echo workload (the `reflect` route: every endpoint
// forwards what it receives back to its sender, Bridge(ep, ep)) against
// the plain UDP relay floor, in the same run and with the same traffic.
//
// The traffic comes from a child process (the test binary re-executed as
// TestLoadGeneratorProcess): 8 shared phone sockets sending 50 G.711
// packets/s per stream in 1 ms slots, and counting what comes back. This
// process is then only the server, and its CPU over the measured window
// (getrusage, user+sys) divided by the packets echoed back is the cost of
// handling one packet (one receive and one send; on loopback each send
// also delivers into the phone's socket).
//
// Three servers handle the same N streams, one after the other:
//
//   - floor-go: one goroutine on one socket doing ReadFromUDPAddrPort +
//     WriteToUDPAddrPort back to the source (a net.UDPConn, Go's
//     netpoller);
//   - floor-raw: one goroutine on one blocking socket doing raw recvfrom
//   - sendto syscalls, no netpoller;
//   - engine: N media endpoints (port pairs from a PortPool, one Pacer,
//     as the SIP agent makes them), each reflecting into itself.
//
// It reports ns of server CPU per packet for each and engine/floor, the
// floor being the cheaper of the two. Run with -cpu 1 to give the server
// one P (the child keeps GOMAXPROCS of the machine):
//
//	go test -run XXX -bench EchoVsFloor -benchtime 1x -cpu 1 ./media/ \
//	    -args -echo.streams=500,1000,2000 -bridge.window=4s
func BenchmarkEchoVsFloor(b *testing.B) {
	var servers []echoServer
	for _, name := range strings.Split(*echoServers, ",") {
		i := slices.IndexFunc(echoServerList, func(s echoServer) bool { return s.name == strings.TrimSpace(name) })
		if i < 0 {
			b.Fatalf("unknown -echo.servers entry %q", name)
		}
		servers = append(servers, echoServerList[i])
	}
	for _, f := range strings.Split(*echoStreamsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n%2 != 0 || n > 16000 {
			b.Fatalf("bad -echo.streams entry %q (even, 2..16000)", f)
		}
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			for b.Loop() { // one op = every server measured once; use -benchtime 1x
				ns := map[string]float64{}
				var engine echoResult
				for _, s := range servers {
					r := runEchoLoad(b, n, *loadWindow, s.new)
					ns[s.name] = r.nsPerPkt()
					b.ReportMetric(r.nsPerPkt(), s.name+"-ns/pkt")
					if s.name == "engine" {
						engine = r
					}
				}
				floor := min(ns["floor-go"], ns["floor-raw"])
				if floor == 0 {
					floor = max(ns["floor-go"], ns["floor-raw"])
				}
				if ns["engine"] > 0 && engine.p50 > 50*time.Millisecond {
					// Packets waited in socket buffers: the server was
					// saturated or starved of CPU (the box is shared), and
					// CPU per packet falls when every wake-up finds a
					// backlog, so the ratio would flatter the engine.
					b.Logf("streams=%d: engine p50 %s: the server fell behind (saturated, or starved by other load); no ratio reported for this run", n, engine.p50)
				} else if ns["engine"] > 0 && floor > 0 {
					b.ReportMetric(ns["engine"]/floor, "engine/floor")
					b.ReportMetric(engine.loss(), "engine-loss-%")
					b.ReportMetric(float64(engine.p99)/1e3, "engine-p99-µs")
					b.Logf("streams=%d: engine %.0f ns/pkt = %.2f× the relay floor (%.0f ns/pkt); load average %s",
						n, ns["engine"], ns["engine"]/floor, floor, loadAvg())
				}
			}
		})
	}
}

// echoServer is one server BenchmarkEchoVsFloor can measure.
type echoServer struct {
	name string
	new  func(int, *loadPhones) (loadServer, error)
}

var echoServerList = []echoServer{
	{"floor-go", newGoRelayFloor},
	{"floor-raw", newRawRelayFloor},
	{"floor-epoll", newEpollRelayFloor},
	{"engine", newEchoStreams},
}

// TestEchoLoadHarness runs the echo benchmark's servers with 40 streams
// and a short window: every packet sent must come back from each.
func TestEchoLoadHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three echo servers over loopback for ~5 s")
	}
	for _, srv := range echoServerList {
		t.Run(srv.name, func(t *testing.T) {
			res := runEchoLoad(t, 40, 300*time.Millisecond, srv.new)
			// 40 streams x 50 packets/s x 0.3 s
			if res.sent < 500 || res.got != res.sent {
				t.Fatalf("sent %d, echoed back %d: want every packet", res.sent, res.got)
			}
			if res.strays != 0 || res.sendErrs != 0 {
				t.Fatalf("%d stray packets, %d send errors", res.strays, res.sendErrs)
			}
		})
	}
}

// echoResult is one server's measured window.
type echoResult struct{ phaseResult }

func (r echoResult) nsPerPkt() float64 { return float64(r.cpu()) / float64(max(r.got, 1)) }

// runEchoLoad starts a server for streams echo streams, drives it from a
// child process for window and returns what it measured.
func runEchoLoad(b testing.TB, streams int, window time.Duration, newServer func(int, *loadPhones) (loadServer, error)) echoResult {
	// A "call" of the phones is two streams: side X sends to one, side Y
	// to the other; each is echoed back to where it came from.
	phones := &loadPhones{n: streams / 2, dstX: make([]netip.AddrPort, streams/2), dstY: make([]netip.AddrPort, streams/2)}
	srv, err := newServer(streams/2, phones)
	if err != nil {
		if srv != nil {
			srv.close()
		}
		b.Fatal(err)
	}
	gor := runtime.NumGoroutine()
	res := measureInChild(b, phones, window)
	srv.close()
	b.Logf("%-9s streams=%d: sent %d got %d loss %.3f%% p50 %s p99 %s; cpu %s (user %s sys %s) = %.0f ns/packet; %d goroutines; load %s",
		serverName(srv), streams, res.sent, res.got, res.loss(), res.p50, res.p99, res.cpu(), res.user, res.sys,
		float64(res.cpu())/float64(max(res.got, 1)), gor, loadAvg())
	return echoResult{res}
}

func serverName(s loadServer) string {
	switch s.(type) {
	case *goRelayFloor:
		return "floor-go"
	case *rawRelayFloor:
		return "floor-raw"
	case *epollRelayFloor:
		return "floor-epoll"
	default:
		return "engine"
	}
}

// echoStreams are the engine's echo: 2n endpoints, each forwarding to
// itself, on one pacer, made the way the SIP agent makes them.
type echoStreams struct {
	pacer *Pacer
	eps   []*Endpoint
	stops []func()
}

func newEchoStreams(n int, phones *loadPhones) (loadServer, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := transport.NewPortPool(61000, 65534) // above the ephemeral ports and every other test's RTP: strays from them would count as loss
	if err != nil {
		return nil, err
	}
	s := &echoStreams{pacer: NewPacer(0)}
	ip := netip.MustParseAddr("127.0.0.1")
	c := codec.Codecs()[0]
	opts := EndpointOptions{Pacer: s.pacer, Logger: log, MediaTimeout: 30 * time.Second, OnMediaTimeout: func() {}}
	for i := range 2 * n {
		e, err := NewEndpoint(pool, ip, opts)
		if err != nil {
			return s, fmt.Errorf("stream %d: %w (ulimit -n?)", i, err)
		}
		s.eps = append(s.eps, e)
		// The phones' real address is unknown until they send (child
		// process): point at the discard port, symmetric RTP latches.
		remote := phones.addrX(i / 2)
		if i%2 == 1 {
			remote = phones.addrY(i / 2)
		}
		e.Configure(StreamConfig{Codec: c, PayloadType: c.PayloadType, DTMFPayloadType: 101, Remote: remote})
		e.Start()
		e.Verify() // the ACK of our 2xx arrived
		s.stops = append(s.stops, Bridge(e, e))
		if i%2 == 0 {
			phones.dstX[i/2] = e.LocalAddr()
		} else {
			phones.dstY[i/2] = e.LocalAddr()
		}
	}
	return s, nil
}

func (s *echoStreams) counters() (out, dropped uint64) {
	for _, e := range s.eps {
		st := e.Stats()
		out += st.PacketsOut
		dropped += st.Dropped
	}
	return out, dropped
}

func (s *echoStreams) close() {
	for _, stop := range s.stops {
		stop()
	}
	for _, e := range s.eps {
		e.Close()
	}
	s.pacer.Close()
}

// goRelayFloor is the relay floor written as plain Go: one goroutine, one
// net.UDPConn, every datagram read and sent back to its source.
type goRelayFloor struct {
	conn *net.UDPConn
	out  atomic.Uint64
	wg   sync.WaitGroup
}

func newGoRelayFloor(n int, phones *loadPhones) (loadServer, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	f := &goRelayFloor{conn: c}
	addr := c.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range n {
		phones.dstX[i], phones.dstY[i] = addr, addr
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 1500)
		for {
			m, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			if _, err := c.WriteToUDPAddrPort(buf[:m], from); err == nil {
				f.out.Add(1)
			}
		}
	}()
	return f, nil
}

func (f *goRelayFloor) counters() (out, dropped uint64) { return f.out.Load(), 0 }
func (f *goRelayFloor) close()                          { f.conn.Close(); f.wg.Wait() }

// rawRelayFloor is the relay floor without Go's netpoller: one goroutine
// on one blocking socket doing recvfrom(2) and sendto(2) to the source,
// the sockaddr reused as the kernel filled it in.
type rawRelayFloor struct {
	fd   int
	out  atomic.Uint64
	stop atomic.Bool
	wg   sync.WaitGroup
}

func newRawRelayFloor(n int, phones *loadPhones) (loadServer, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := &rawRelayFloor{fd: fd}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	// Bounded blocking: the loop re-checks stop every 100 ms.
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	in4 := sa.(*syscall.SockaddrInet4)
	addr := netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	for i := range n {
		phones.dstX[i], phones.dstY[i] = addr, addr
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		buf := make([]byte, 1500)
		var rsa syscall.RawSockaddrAny
		for !f.stop.Load() {
			l := uint32(syscall.SizeofSockaddrAny)
			m, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
				0, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
			if errno != 0 {
				continue // timeout (EAGAIN), EINTR
			}
			_, _, errno = syscall.Syscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), m,
				0, uintptr(unsafe.Pointer(&rsa)), uintptr(l))
			if errno == 0 {
				f.out.Add(1)
			}
		}
	}()
	return f, nil
}

func (f *rawRelayFloor) counters() (out, dropped uint64) { return f.out.Load(), 0 }
func (f *rawRelayFloor) close() {
	f.stop.Store(true)
	f.wg.Wait()
	syscall.Close(f.fd)
}

// epollRelayFloor is the relay with one socket per stream, as the engine
// has: one goroutine blocked in epoll_wait (level-triggered) over 2n
// non-blocking sockets, one recvfrom and one sendto back to the source per
// readiness. It separates what a socket per stream costs from what the
// engine adds on top.
type epollRelayFloor struct {
	epfd int
	fds  []int
	out  atomic.Uint64
	stop atomic.Bool
	wg   sync.WaitGroup
}

func newEpollRelayFloor(n int, phones *loadPhones) (loadServer, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := &epollRelayFloor{epfd: ep}
	for i := range 2 * n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return f, fmt.Errorf("stream %d: %w (ulimit -n?)", i, err)
		}
		f.fds = append(f.fds, fd)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return f, err
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			return f, err
		}
		in4 := sa.(*syscall.SockaddrInet4)
		addr := netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
		if i%2 == 0 {
			phones.dstX[i/2] = addr
		} else {
			phones.dstY[i/2] = addr
		}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
			return f, err
		}
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		events := make([]syscall.EpollEvent, 256)
		buf := make([]byte, 1500)
		var rsa syscall.RawSockaddrAny
		for !f.stop.Load() {
			k, err := syscall.EpollWait(ep, events, 100) // bounded: re-checks stop
			if err != nil {
				continue
			}
			for _, ev := range events[:k] {
				fd := uintptr(ev.Fd)
				l := uint32(syscall.SizeofSockaddrAny)
				m, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
					syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
				if errno != 0 {
					continue
				}
				_, _, errno = syscall.Syscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&buf[0])), m,
					0, uintptr(unsafe.Pointer(&rsa)), uintptr(l))
				if errno == 0 {
					f.out.Add(1)
				}
			}
		}
	}()
	return f, nil
}

func (f *epollRelayFloor) counters() (out, dropped uint64) { return f.out.Load(), 0 }
func (f *epollRelayFloor) close() {
	f.stop.Store(true)
	f.wg.Wait()
	for _, fd := range append(f.fds, f.epfd) {
		syscall.Close(fd)
	}
}

// BenchmarkIdleTick is the 20 ms tick of an endpoint with nothing to do:
// an echo leg (it forwards into itself, so it generates no audio and
// decodes nothing), as the Pacer runs it for every such leg every 20 ms.
func BenchmarkIdleTick(b *testing.B) {
	pool, err := transport.NewPortPool(42200, 42299)
	if err != nil {
		b.Fatal(err)
	}
	p := NewPacer(1)
	defer p.Close()
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{Pacer: p, MediaTimeout: 30 * time.Second, OnMediaTimeout: func() {}})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	spec := codec.Codecs()[0]
	e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
	e.Start()
	stop := Bridge(e, e)
	defer stop()
	b.ReportAllocs()
	for b.Loop() {
		e.mediaTick()
	}
}

// The whole echo path on a polled transport allocates nothing per packet:
// the phone's datagram is read by the poller from a raw socket, handed to
// the stream, rewritten and sent back with a raw sendto.
func TestEchoPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pool, err := transport.NewPortPool(42400, 42499)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPacer(1)
	defer p.Close()
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{Pacer: p, NoIdleSilence: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	spec := codec.Codecs()[0]
	e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: phone.LocalAddr().(*net.UDPAddr).AddrPort()})
	e.Start()
	defer Bridge(e, e)()
	if !udpOf(e).Polled() {
		t.Fatal("the endpoint's transport is not polled")
	}
	pkt := make([]byte, 12+160)
	buf := make([]byte, 1500)
	to := e.LocalAddr()
	var seq uint16
	echo := func() {
		seq++
		pkt[0], pkt[1] = 0x80, spec.PayloadType
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		pkt[11] = 7
		if _, err := phone.WriteToUDPAddrPort(pkt, to); err != nil {
			t.Fatal(err)
		}
		_ = phone.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := phone.ReadFromUDPAddrPort(buf); err != nil || n != len(pkt) {
			t.Fatalf("echo: %d bytes, %v", n, err)
		}
	}
	echo() // latch, first-use allocations
	if allocs := testing.AllocsPerRun(200, echo); allocs != 0 {
		t.Fatalf("%.1f allocations per echoed packet", allocs)
	}
}

// BenchmarkIdleTicks is what a Pacer shard pays per idle endpoint per
// 20 ms: 2,000 echo endpoints (each forwards into itself, so it generates
// nothing and decodes nothing) on one shard, and one op is one pass of
// that shard as its goroutine runs it (the shard's goroutine is not
// started; the benchmark drives pass). Idle endpoints sit on the slow
// list, so the average covers the passes that skip them and the one in
// slowEvery that visits them; what each endpoint's memory costs cold
// between visits shows, not only the instructions.
func BenchmarkIdleTicks(b *testing.B) {
	const n = 2000
	pool, err := transport.NewPortPool(43000, 43000+2*n+99)
	if err != nil {
		b.Fatal(err)
	}
	p := newPacer(1, false)
	defer p.Close()
	sh := p.shards[0]
	spec := codec.Codecs()[0]
	for range n {
		e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{Pacer: p, MediaTimeout: 30 * time.Second, OnMediaTimeout: func() {}})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, DTMFPayloadType: 101, Remote: netip.MustParseAddrPort("127.0.0.1:9")})
		e.Start()
		defer Bridge(e, e)()
	}
	for range 4 * demoteAfter {
		sh.pass(time.Now())
	}
	if p.Idle() != n {
		b.Fatalf("%d of %d echo endpoints idle after %d passes", p.Idle(), n, 4*demoteAfter)
	}
	b.ReportAllocs()
	for b.Loop() {
		sh.pass(time.Now())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/endpoint")
}
