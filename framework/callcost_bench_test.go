package framework

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// The whole-call benchmarks measure what one call costs the signaling
// path: INVITE → 100/200 → ACK → BYE → 200 against an in-process server
// whose flow is the `reflect` route of `switchboard serve` (Call.Echo),
// over loopback UDP. The caller is a few lines of byte formatting on a
// plain UDP socket (no SIP stack, no transactions), so nearly all of the
// measured cost is the server's. No RTP flows (like SIPp's plain uac).
//
// Reported per op (one call): ns/op (wall time, with several calls in
// flight), B/op and allocs/op (the whole process; the caller allocates a
// few hundred bytes), cpu-ns/op (user+system CPU of the process from
// getrusage, caller included). BenchmarkCallHeld reports live-B/call:
// heap and stacks held per answered call with many calls up.

// benchServer starts a server for the benchmarks with the reflect flow and
// no per-source call limits.
func benchServer(b testing.TB, portMin, portMax, keep int) *Server {
	b.Helper()
	h := HandlerFunc(func(ctx context.Context, c *Call) error { return c.Echo(ctx) })
	srv, err := NewServer(Config{SIPAddr: *benchAddr, HTTPAddr: "-", RTPPortMin: portMin, RTPPortMax: portMax, RTPKeepSockets: keep,
		// Calls end here within a millisecond, thousands a second: ports
		// rest 200 ms (serve's 2 s would rest more pairs than the range has).
		RTPPortRest: 200 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})), // as serve --log-level warn
		CallLimits:  sip.CallLimits{GuestCalls: -1, GuestRate: -1, GuestShare: -1},
		Overload:    sip.OverloadOptions{MaxPendingInvites: -1}}, h)
	if err != nil {
		b.Fatal(err)
	}
	testharness.Serve(b, srv)
	return srv
}

// benchCaller places calls over one UDP socket, one at a time.
type benchCaller struct {
	conn   *net.UDPConn
	server string // host:port
	to     *net.UDPAddr
	local  string
	rtp    int // the port our SDP names (a socket that drops what it gets)
	id     string
	n      int
	buf    []byte
	msg    bytes.Buffer
}

var benchCallerSeq atomic.Int64

// benchKeep is Config.RTPKeepSockets in the benchmarks (serve's default;
// -args -callbench.keep=0 measures without kept sockets).
var benchAddr = flag.String("callbench.addr", "127.0.0.1:0", "the benchmarks' server's SIP address (0.0.0.0:0: all interfaces, as serve by default)")

var benchHeap = flag.String("callbench.heap", "", "BenchmarkCallEnded writes heap profiles PREFIX-base.pb.gz and PREFIX-ended.pb.gz (compare with pprof -diff_base)")

var benchKeep = flag.Int("callbench.keep", 8192, "Config.RTPKeepSockets of BenchmarkCall and BenchmarkCallHeld")

func newBenchCaller(server string, rtpPort int) (*benchCaller, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(1 << 20)
	to, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	return &benchCaller{conn: conn, server: server, to: to, local: conn.LocalAddr().String(), rtp: rtpPort,
		id: strconv.FormatInt(benchCallerSeq.Add(1), 10), buf: make([]byte, 4096)}, nil
}

const benchSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"

// dialog is what the caller keeps of an answered call to ACK and end it.
type benchDialog struct {
	callID, fromTag string
	to              []byte // the 200's To header value (with the server's tag)
	ack             []byte // our ACK, sent again if the 200 is
}

func (c *benchCaller) send() error {
	_, err := c.conn.WriteToUDP(c.msg.Bytes(), c.to)
	return err
}

// request formats a request of the dialog into c.msg.
func (c *benchCaller) request(method string, cseq int, d *benchDialog, branch string, body string) {
	m := &c.msg
	m.Reset()
	fmt.Fprintf(m, "%s sip:reflect@%s SIP/2.0\r\n", method, c.server)
	fmt.Fprintf(m, "Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s;rport\r\n", c.local, branch)
	fmt.Fprintf(m, "From: <sip:bench@127.0.0.1>;tag=%s\r\n", d.fromTag)
	if d.to != nil {
		m.WriteString("To: ")
		m.Write(d.to)
		m.WriteString("\r\n")
	} else {
		fmt.Fprintf(m, "To: <sip:reflect@%s>\r\n", c.server)
	}
	fmt.Fprintf(m, "Call-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\nContact: <sip:bench@%s>\r\n", d.callID, cseq, method, c.local)
	if body != "" {
		fmt.Fprintf(m, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	} else {
		m.WriteString("Content-Length: 0\r\n\r\n")
	}
}

// await reads responses until a final one for method arrives; it returns
// its status and To header value (copied). The request in c.msg is sent
// again every 500 ms without an answer (a datagram lost in a full socket
// buffer), and a repeated 200 to the INVITE gets the ACK in ack again.
func (c *benchCaller) await(method string, callID string, ack []byte) (int, []byte, error) {
	for try := 0; ; try++ {
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.conn.Read(c.buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() && try < 20 {
			if err := c.send(); err != nil {
				return 0, nil, err
			}
			continue
		}
		if err != nil {
			return 0, nil, fmt.Errorf("waiting for the %s response of %s: %w", method, callID, err)
		}
		msg := c.buf[:n]
		if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || len(msg) < 12 {
			continue // a request (there should be none) or junk
		}
		code, err := strconv.Atoi(string(msg[8:11]))
		if err != nil || code < 200 {
			continue
		}
		if !bytes.Equal(header(msg, "Call-ID"), []byte(callID)) {
			continue // a retransmission of an earlier call's response
		}
		cseq := header(msg, "CSeq")
		if !bytes.HasSuffix(cseq, []byte(method)) {
			if ack != nil && bytes.HasSuffix(cseq, []byte("INVITE")) {
				_, _ = c.conn.WriteToUDP(ack, c.to)
			}
			continue
		}
		return code, bytes.Clone(header(msg, "To")), nil
	}
}

// header returns the value of the first header called name in msg.
func header(msg []byte, name string) []byte {
	for line := range bytes.SplitSeq(msg, []byte("\r\n")) {
		if len(line) == 0 {
			break
		}
		if len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name)) {
			return bytes.TrimSpace(line[len(name)+1:])
		}
	}
	return nil
}

// setup sends an INVITE and the ACK of its 200.
func (c *benchCaller) setup() (*benchDialog, error) {
	c.n++
	d := &benchDialog{callID: c.id + "-" + strconv.Itoa(c.n) + "@bench", fromTag: "f" + strconv.Itoa(c.n)}
	c.request("INVITE", 1, d, d.callID+"-i", fmt.Sprintf(benchSDP, c.rtp))
	if err := c.send(); err != nil {
		return nil, err
	}
	code, to, err := c.await("INVITE", d.callID, nil)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("INVITE %s answered %d (%s)", d.callID, code, c.buf[:bytes.IndexByte(c.buf, 13)])
	}
	d.to = to
	c.request("ACK", 1, d, d.callID+"-a", "")
	d.ack = bytes.Clone(c.msg.Bytes())
	return d, c.send()
}

// end sends BYE and waits for its 200.
func (c *benchCaller) end(d *benchDialog) error {
	c.request("BYE", 2, d, d.callID+"-b", "")
	if err := c.send(); err != nil {
		return err
	}
	code, _, err := c.await("BYE", d.callID, d.ack)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("BYE %s answered %d", d.callID, code)
	}
	return nil
}

// rtpSink is a socket for the SDP's media address; it drops what it gets.
func rtpSink(b testing.TB) int {
	b.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).Port
}

// goroutinesCreated is how many goroutines the process has started.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCall runs whole calls (INVITE..BYE) against the reflect flow,
// with 8 callers per GOMAXPROCS placing calls back to back.
func BenchmarkCall(b *testing.B) {
	srv := benchServer(b, 40000, 59999, *benchKeep)
	addr := "127.0.0.1:" + strconv.Itoa(int(srv.SIPAddr().Port()))
	rtp := rtpSink(b)
	// Warm up (first calls pay for pools, the codec tables, ...).
	warm, err := newBenchCaller(addr, rtp)
	if err != nil {
		b.Fatal(err)
	}
	for range 20 {
		d, err := warm.setup()
		if err == nil {
			err = warm.end(d)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	warm.conn.Close()
	b.SetParallelism(8)
	b.ReportAllocs()
	cpu0, g0 := cpuTime(), goroutinesCreated()
	b.ResetTimer()
	var failed atomic.Value
	b.RunParallel(func(pb *testing.PB) {
		c, err := newBenchCaller(addr, rtp)
		if err != nil {
			failed.Store(err)
			return
		}
		defer c.conn.Close()
		for pb.Next() {
			d, err := c.setup()
			if err == nil {
				err = c.end(d)
			}
			if err != nil {
				failed.Store(err)
				for pb.Next() { // RunParallel wants the iterations consumed
				}
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	// Callers and the RTP sink start theirs before the window: these are
	// the server's (each one costs a fresh stack, and often its growth).
	b.ReportMetric(float64(goroutinesCreated()-g0)/float64(b.N), "goroutines/op")
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	waitIdle(b, srv)
}

// waitIdle waits (bounded) for the server to have no call left.
func waitIdle(b testing.TB, srv *Server) {
	b.Helper()
	for i := 0; srv.ActiveCalls() > 0; i++ {
		if i == 500 {
			b.Fatalf("%d calls still up 5 s after the last BYE", srv.ActiveCalls())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkCallHeld answers calls and keeps them up, then ends them all:
// live-B/call is the heap and stacks the server holds per answered call
// (after a GC), with 500 calls up.
func BenchmarkCallHeld(b *testing.B) {
	const held = 500
	srv := benchServer(b, 40000, 59999, *benchKeep)
	addr := "127.0.0.1:" + strconv.Itoa(int(srv.SIPAddr().Port()))
	rtp := rtpSink(b)
	const callers = 10
	cs := make([]*benchCaller, callers)
	for i := range cs {
		c, err := newBenchCaller(addr, rtp)
		if err != nil {
			b.Fatal(err)
		}
		defer c.conn.Close()
		cs[i] = c
	}
	// A first round grows the runtime's pools (goroutine descriptors,
	// sipgo's maps) to the high-water mark, so the baseline includes them.
	round := func(measure func()) {
		ds := make([][]*benchDialog, callers)
		var wg sync.WaitGroup
		var failed atomic.Value
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range held / callers {
					d, err := c.setup()
					if err != nil {
						failed.Store(err)
						return
					}
					ds[i] = append(ds[i], d)
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		for i := 0; srv.ActiveCalls() < held; i++ {
			if i == 500 {
				b.Fatalf("%d of %d calls up", srv.ActiveCalls(), held)
			}
			time.Sleep(10 * time.Millisecond)
		}
		measure()
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, d := range ds[i] {
					if err := c.end(d); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		waitIdle(b, srv)
	}
	inuse := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse + ms.StackInuse
	}
	round(func() {})
	time.Sleep(100 * time.Millisecond)
	base := inuse()
	heapProfile(b, "heldbase")
	var live uint64
	b.ResetTimer()
	for range b.N {
		round(func() {
			if n := inuse(); n > base {
				live += (n - base) / held
			}
			heapProfile(b, "held")
		})
	}
	b.ReportMetric(float64(live)/float64(b.N), "live-B/call")
}

// runCalls places n whole calls (INVITE..BYE) with 16 callers and waits
// until the server has no call up.
func runCalls(b testing.TB, srv *Server, addr string, rtp int, n int) {
	b.Helper()
	const callers = 16
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := newBenchCaller(addr, rtp)
			if err != nil {
				failed.Store(err)
				return
			}
			defer c.conn.Close()
			for next.Add(1) <= int64(n) {
				d, err := c.setup()
				if err == nil {
					err = c.end(d)
				}
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	waitIdle(b, srv)
}

// heapProfile writes a heap profile named after -callbench.heap and what.
func heapProfile(b *testing.B, what string) {
	if *benchHeap == "" {
		return
	}
	f, err := os.Create(*benchHeap + "-" + what + ".pb.gz")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// liveHeap is the heap and stack bytes live after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// BenchmarkCallEnded runs b.N whole calls, waits for every call to end,
// and reports ended-live-B/call: the heap and stacks the server still
// holds per call that has ended (within the 32 s a retransmitted BYE must
// still be answered), against a baseline taken after a first round of
// calls whose state has been let go.
func BenchmarkCallEnded(b *testing.B) {
	srv := benchServer(b, 40000, 59999, *benchKeep)
	addr := "127.0.0.1:" + strconv.Itoa(int(srv.SIPAddr().Port()))
	rtp := rtpSink(b)
	runCalls(b, srv, addr, rtp, 200)
	base := liveHeap()
	heapProfile(b, "base")
	b.ResetTimer()
	runCalls(b, srv, addr, rtp, b.N)
	b.StopTimer()
	live := liveHeap()
	heapProfile(b, "ended")
	b.ReportMetric(float64(int64(live)-int64(base))/float64(b.N), "ended-live-B/call")
}
