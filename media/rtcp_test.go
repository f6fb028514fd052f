package media

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// rtcpPair makes two started endpoints on 127.0.0.1 that send silence to
// each other and report every ~100 ms.
func rtcpPair(t *testing.T, mux bool, remoteOf func(a, b *Endpoint) (toB, toA netip.AddrPort)) (a, b *Endpoint) {
	t.Helper()
	pool, err := transport.NewPortPool(43100, 43199)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	opts := EndpointOptions{RTCPInterval: 100 * time.Millisecond}
	if a, err = NewEndpoint(pool, ip, opts); err != nil {
		t.Fatal(err)
	}
	if b, err = NewEndpoint(pool, ip, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	toB, toA := b.LocalAddr(), a.LocalAddr()
	if remoteOf != nil {
		toB, toA = remoteOf(a, b)
	}
	spec := codec.Codecs()[0]
	a.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: toB, RTCPMux: mux})
	b.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: toA, RTCPMux: mux})
	a.Start()
	b.Start()
	return a, b
}

// Two endpoints exchanging RTP send each other SR + SDES on port+1, see
// each other's report blocks, measure a small RTT, report no loss, rate the
// stream as clean G.711, and a closing endpoint's BYE reaches the other.
func TestRTCPReportsBetweenEndpoints(t *testing.T) {
	a, b := rtcpPair(t, false, nil)
	ok := waitUntil(t, 5*time.Second, func() bool {
		sa, sb := a.Stats(), b.Stats()
		return sa.RemoteReports >= 3 && sb.RemoteReports >= 3 && sa.RTTSamples >= 2 && sb.RTTSamples >= 2
	})
	sa, sb := a.Stats(), b.Stats()
	if !ok {
		t.Fatalf("reports not exchanged: a %+v\nb %+v", sa, sb)
	}
	t.Logf("a: RTT %v (%d samples), MOS %.2f/%.2f, RTCP in %d out %d", sa.RTT, sa.RTTSamples, sa.MOS, sa.RemoteMOS, sa.RTCPIn, sa.RTCPOut)
	for name, st := range map[string]EndpointStats{"a": sa, "b": sb} {
		if st.RTCPIn == 0 || st.RTCPOut == 0 || st.RTCPDropped != 0 {
			t.Errorf("%s: RTCP in %d out %d dropped %d", name, st.RTCPIn, st.RTCPOut, st.RTCPDropped)
		}
		if st.RTT < 0 || st.RTT > 50*time.Millisecond {
			t.Errorf("%s: RTT %v on loopback", name, st.RTT)
		}
		if st.RemoteLost != 0 || st.RemoteFractionLost != 0 || st.Lost != 0 {
			t.Errorf("%s: loss on loopback: remote %d (%.3f), local %d", name, st.RemoteLost, st.RemoteFractionLost, st.Lost)
		}
		if st.MOS < 4.3 || st.RemoteMOS < 4.3 {
			t.Errorf("%s: MOS %.2f / remote %.2f for clean G.711 on loopback", name, st.MOS, st.RemoteMOS)
		}
	}
	// Symmetric RTCP latched the peer's RTCP port: RTP port + 1.
	for _, p := range [][2]*Endpoint{{a, b}, {b, a}} {
		dest := udpOf(p[0]).RTCPSource()
		if want := netip.AddrPortFrom(p[1].LocalAddr().Addr(), p[1].LocalAddr().Port()+1); dest != want {
			t.Errorf("RTCP latched to %v, want %v", dest, want)
		}
	}
	if b.Stats().RemoteBye {
		t.Fatal("BYE before close")
	}
	a.Close()
	if !waitUntil(t, 2*time.Second, func() bool { return b.Stats().RemoteBye }) {
		t.Fatal("B never saw A's RTCP BYE")
	}
}

// lossyProxy relays datagrams between two endpoints and drops a seeded
// pseudo-random tenth of the RTP going from A to B while dropping is on.
type lossyProxy struct {
	toA, toB *net.UDPConn // A talks to toA's port, B to toB's
	dropping atomic.Bool
	dropped  atomic.Uint64
}

func newLossyProxy(t *testing.T) *lossyProxy {
	t.Helper()
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	pa, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close(); pb.Close() })
	return &lossyProxy{toA: pa, toB: pb}
}

func (p *lossyProxy) run(a, b netip.AddrPort) {
	rng := rand.New(rand.NewPCG(10, 5761)) // drops RTP packets 7, 12, 21, 28, 37, 45, 60, ... of the lossy phase
	relay := func(in, out *net.UDPConn, dst netip.AddrPort, lossy bool) {
		buf := make([]byte, 1500)
		for {
			n, _, err := in.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if lossy && !transport.IsRTCP(buf[:n]) && p.dropping.Load() && rng.IntN(10) == 0 {
				p.dropped.Add(1)
				continue
			}
			_, _ = out.WriteToUDPAddrPort(buf[:n], dst)
		}
	}
	go relay(p.toA, p.toB, b, true)
	go relay(p.toB, p.toA, a, false)
}

// With rtcp-mux through a path that drops RTP on purpose, B's receive
// statistics count exactly the dropped packets, A learns the same number
// from B's receiver reports on the RTP port, and both MOS estimates see it.
func TestRTCPMuxPeerReportsInjectedLoss(t *testing.T) {
	px := newLossyProxy(t)
	a, b := rtcpPair(t, true, func(a, b *Endpoint) (netip.AddrPort, netip.AddrPort) {
		px.run(a.LocalAddr(), b.LocalAddr())
		return px.toA.LocalAddr().(*net.UDPAddr).AddrPort(), px.toB.LocalAddr().(*net.UDPAddr).AddrPort()
	})
	px.dropping.Store(true)
	time.Sleep(1500 * time.Millisecond)
	px.dropping.Store(false)
	dropped := px.dropped.Load()
	if dropped < 3 {
		t.Fatalf("the seeded pattern dropped only %d packets", dropped)
	}
	var sa, sb EndpointStats
	ok := waitUntil(t, 3*time.Second, func() bool {
		sa, sb = a.Stats(), b.Stats()
		return sa.RemoteLost == dropped && sb.Lost == dropped && sa.RTTSamples > 0
	})
	if !ok {
		t.Fatalf("dropped %d: B counted %d lost, A's view from B's RR %d (reports %d, RTT samples %d)",
			dropped, sb.Lost, sa.RemoteLost, sa.RemoteReports, sa.RTTSamples)
	}
	t.Logf("dropped %d of %d; A: RTT %v, MOS %.2f, remote MOS %.2f; B: MOS %.2f", dropped, sb.Expected, sa.RTT, sa.MOS, sa.RemoteMOS, sb.MOS)
	if sa.RTT < 0 || sa.RTT > 50*time.Millisecond {
		t.Errorf("RTT %v through a loopback relay", sa.RTT)
	}
	// A hears everything B sends; B misses ~10 % of what A sends.
	if sb.MOS >= 4.2 || sb.MOS < 2.5 || sa.RemoteMOS >= 4.2 || sa.RemoteMOS < 2.5 {
		t.Errorf("MOS with ~10%% loss: B %.2f, A's estimate for B %.2f", sb.MOS, sa.RemoteMOS)
	}
	if sa.MOS < 4.3 {
		t.Errorf("MOS of the clean direction %.2f", sa.MOS)
	}
	if sa.RTCPDropped != 0 || sb.RTCPDropped != 0 {
		t.Errorf("RTCP dropped: %d, %d", sa.RTCPDropped, sb.RTCPDropped)
	}
	// Muxed: nothing arrived on, or latched to, the RTCP ports.
	for _, e := range []*Endpoint{a, b} {
		dest := udpOf(e).RTCPSource()
		if dest.IsValid() {
			t.Errorf("RTCP arrived on port+1 from %v with rtcp-mux", dest)
		}
	}
}

// Garbage on either RTCP path, and RTCP from a stranger, is counted and
// dropped; the endpoint keeps working.
func TestRTCPMalformedIsDropped(t *testing.T) {
	a, b := rtcpPair(t, false, nil)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.LocalAddr().Addr(), a.LocalAddr().Port()+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rtpPort, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(a.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer rtpPort.Close()
	rr, _ := (&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: a.ssrc}}}).Marshal()
	bad := [][]byte{
		{},
		{0x80},
		{0x80, 0xc9, 0x00, 0x07},          // RR whose length runs past the datagram
		rr[:len(rr)-4],                    // truncated
		{0x80, 0xc8, 0x00, 0x00, 1, 2, 3}, // SR with length 0
		append([]byte{0x80, 0xc9, 0xff, 0xff}, make([]byte, 12)...),
	}
	for _, pkt := range bad {
		if _, err := c.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
	muxed := 0
	for _, pkt := range bad {
		if transport.IsRTCP(pkt) {
			muxed++
			if _, err := rtpPort.Write(pkt); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A well-formed RR + BYE from 127.0.0.2 is not the peer's.
	bye, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1}, &rtcp.Goodbye{Sources: []uint32{1}}})
	if c2, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)}, c.RemoteAddr().(*net.UDPAddr)); err == nil {
		defer c2.Close()
		_, _ = c2.Write(bye)
		muxed++
	}
	want := uint64(len(bad) - 1 + muxed) // the empty datagram never arrives as a read on some kernels
	if !waitUntil(t, 2*time.Second, func() bool { return a.Stats().RTCPDropped >= want }) {
		t.Fatalf("dropped %d of %d bad RTCP packets", a.Stats().RTCPDropped, want)
	}
	if a.Stats().RemoteBye {
		t.Fatal("a BYE from a stranger was applied")
	}
	if !waitUntil(t, 3*time.Second, func() bool { return a.Stats().RemoteReports > 0 && b.Stats().RemoteReports > 0 }) {
		t.Fatal("reports stopped after bad input")
	}
}

// A receiver report block carries RFC 3550 A.3 loss numbers: the fraction
// lost over the interval since the last report, the cumulative count, the
// extended highest sequence (with a wrap), jitter, LSR and DLSR.
func TestRTCPReceptionBlock(t *testing.T) {
	var s rtcpSession
	s.init(0, 0xabcdef01)
	var rs recvStats
	t0 := time.Unix(1_700_000_000, 0)
	seq := uint16(65500)
	for i := range 100 { // 100 packets across the wrap, 10 of them lost
		if i%10 != 5 {
			rs.update(0x1234, seq, uint32(i*160), t0.Add(time.Duration(i)*20*time.Millisecond), 8000)
		}
		seq++
	}
	// The peer's SR, received 1.5 s before our report.
	now := t0.Add(3 * time.Second)
	srNTP := uint64(0x0102030405060708)
	s.peerSR = peerSR{ok: true, ssrc: 0x1234, mid: uint32(srNTP >> 16), at: now.Add(-1500 * time.Millisecond)}
	r, ok := rs.reception()
	if !ok {
		t.Fatal("no reception state")
	}
	b := s.receptionBlock(now, r)
	if b.SSRC != 0x1234 || b.TotalLost != 10 || b.FractionLost != 25 /* 10/100 * 256 */ {
		t.Fatalf("block %+v", b)
	}
	if want := uint32(1<<16 | (65500+99)%65536); b.LastSequenceNumber != want {
		t.Fatalf("extended highest %#x, want %#x", b.LastSequenceNumber, want)
	}
	if b.Jitter != 0 { // the packets arrived exactly on time
		t.Fatalf("jitter %d", b.Jitter)
	}
	if b.LastSenderReport != 0x03040506 || b.Delay != 3*65536/2 {
		t.Fatalf("LSR %#x DLSR %d", b.LastSenderReport, b.Delay)
	}
	// Next interval: 50 packets, 5 lost (every 10th), one duplicate.
	for i := 100; i < 150; i++ {
		if i%10 != 3 {
			rs.update(0x1234, seq, uint32(i*160), t0.Add(time.Duration(i)*20*time.Millisecond), 8000)
		}
		seq++
	}
	rs.update(0x1234, seq-1, uint32(149*160), t0.Add(3*time.Second), 8000)
	r, _ = rs.reception()
	b = s.receptionBlock(now, r)
	if b.TotalLost != 15 || b.FractionLost != 25 /* 5/50 */ {
		t.Fatalf("second interval: %+v", b)
	}
	// A new source starts its interval from scratch.
	rs.update(0x9999, 10, 0, now, 8000)
	r, _ = rs.reception()
	if b = s.receptionBlock(now, r); b.SSRC != 0x9999 || b.FractionLost != 0 || b.TotalLost != 0 || b.LastSenderReport != 0 {
		t.Fatalf("new source: %+v", b)
	}
}

// RTT = A − LSR − DLSR: our SR goes out, the peer holds it 400 ms and
// reports 1.25 s after we sent, so the network took 850 ms.
func TestRTCPRoundTripFromReportBlock(t *testing.T) {
	var s rtcpSession
	s.init(0, 0x55)
	t0 := s.epoch.Add(10 * time.Second)
	if _, err := s.build(t0, reportInput{packets: 50, octets: 8000}, false); err != nil {
		t.Fatal(err)
	}
	lsr := s.sent[0].mid
	if lsr == 0 {
		t.Fatal("no SR recorded")
	}
	rr := func(lsr, dlsr uint32, lost uint32) []byte {
		p, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x77, Reports: []rtcp.ReceptionReport{
			{SSRC: 0x55, FractionLost: 64, TotalLost: lost, LastSequenceNumber: 1000, Jitter: 80, LastSenderReport: lsr, Delay: dlsr}}}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := s.receive(rr(lsr, 400*65536/1000, 7), t0.Add(1250*time.Millisecond), 60); err != nil {
		t.Fatal(err)
	}
	v := s.peer
	if d := v.rtt - 850*time.Millisecond; v.rttSamples != 1 || d < -time.Millisecond || d > time.Millisecond {
		t.Fatalf("RTT %v (%d samples), want 850 ms", v.rtt, v.rttSamples)
	}
	if v.reports != 1 || v.totalLost != 7 || v.fractionLost != 64 || v.jitterTS != 80 || v.sentAtReport != 60 {
		t.Fatalf("peer view %+v", v)
	}
	// An LSR we never sent, and a DLSR longer than the round trip, give
	// no RTT; a negative cumulative loss reads as 0.
	for _, pkt := range [][]byte{rr(lsr+12345, 0, 0), rr(lsr, 5*65536, 0xfffffe)} {
		if err := s.receive(pkt, t0.Add(1250*time.Millisecond), 60); err != nil {
			t.Fatal(err)
		}
	}
	if s.peer.rttSamples != 1 || s.peer.totalLost != 0 || s.peer.reports != 3 {
		t.Fatalf("after bogus reports: %+v", s.peer)
	}
}

// A report is an SR while we send RTP (and for one report after), then an
// RR; each starts a compound packet followed by SDES CNAME, and BYE last.
func TestRTCPBuildCompound(t *testing.T) {
	var s rtcpSession
	s.init(0, 0x42)
	now := s.epoch.Add(time.Second)
	types := func(packets uint64, bye bool) []string {
		pkt, err := s.build(now, reportInput{packets: packets, rtpTS: 8000, recvOK: true, withReport: true,
			recv: receptionState{ssrc: 9, expected: 10, received: 10, extHighest: 10}}, bye)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := rtcp.Unmarshal(pkt)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			switch p := p.(type) {
			case *rtcp.SenderReport:
				if p.SSRC != 0x42 || p.PacketCount != uint32(packets) || p.RTPTime != 8000 || len(p.Reports) != 1 || p.Reports[0].SSRC != 9 {
					t.Fatalf("SR %+v", p)
				}
				out = append(out, "SR")
			case *rtcp.ReceiverReport:
				if p.SSRC != 0x42 || len(p.Reports) != 1 {
					t.Fatalf("RR %+v", p)
				}
				out = append(out, "RR")
			case *rtcp.SourceDescription:
				if len(p.Chunks) != 1 || p.Chunks[0].Source != 0x42 || p.Chunks[0].Items[0].Type != rtcp.SDESCNAME || len(p.Chunks[0].Items[0].Text) != 16 {
					t.Fatalf("SDES %+v", p)
				}
				out = append(out, "SDES")
			case *rtcp.Goodbye:
				if len(p.Sources) != 1 || p.Sources[0] != 0x42 {
					t.Fatalf("BYE %+v", p)
				}
				out = append(out, "BYE")
			}
		}
		return out
	}
	steps := []struct {
		packets uint64
		bye     bool
		want    string
	}{
		{0, false, "[RR SDES]"},
		{10, false, "[SR SDES]"},
		{20, false, "[SR SDES]"},
		{20, false, "[SR SDES]"}, // sent during the interval before the last
		{20, false, "[RR SDES]"},
		{20, true, "[RR SDES BYE]"},
		{25, true, "[SR SDES BYE]"},
	}
	for i, st := range steps {
		if got := fmtList(types(st.packets, st.bye)); got != st.want {
			t.Fatalf("step %d: %s, want %s", i, got, st.want)
		}
	}
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}

func TestNextRTCPIntervalIsRandomisedWithinBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Hour, time.Duration(0)
	for range 10000 {
		d := nextRTCPInterval(5*time.Second, rng.Float64())
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 2500*time.Millisecond || hi >= 7500*time.Millisecond || lo > 2600*time.Millisecond || hi < 7400*time.Millisecond {
		t.Fatalf("intervals span %v–%v, want ~2.5 s–7.5 s", lo, hi)
	}
	if d := nextRTCPInterval(time.Second, 7); d != time.Second {
		t.Fatalf("out-of-range u gave %v", d)
	}
}

func TestNTPTime(t *testing.T) {
	// 2026-01-01T00:00:00.5Z: 3976214400 s since 1900, half a second.
	ts := time.Date(2026, 1, 1, 0, 0, 0, 500_000_000, time.UTC)
	if got := ntpTime(ts); got != 3976214400<<32|1<<31 {
		t.Fatalf("ntpTime = %#x", got)
	}
	if toNTP16(1500*time.Millisecond) != 98304 || toNTP16(-time.Second) != 0 || toNTP16(100000*time.Hour) != 0xffffffff {
		t.Fatal("toNTP16")
	}
}

func FuzzRTCPReceive(f *testing.F) {
	var s rtcpSession
	s.init(0, 0x55)
	good, _ := s.build(s.epoch, reportInput{packets: 3, recvOK: true, withReport: true, recv: receptionState{ssrc: 0x55, expected: 4, received: 3}}, true)
	f.Add(append([]byte(nil), good...))
	rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 0x55, LastSenderReport: 1, Delay: 2}}},
		&rtcp.Goodbye{Sources: []uint32{1}, Reason: "bye"}})
	f.Add(rr)
	f.Add([]byte{0x80, 0xc8, 0x00, 0x06, 0, 0, 0, 1})
	f.Add([]byte{0x8f, 0xcd, 0x00, 0x01, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var s rtcpSession
		s.init(0, 0x55)
		_, _ = s.build(s.epoch, reportInput{packets: 1}, false)
		s.sent[0].mid = 1 // let a fuzzed LSR match
		err := s.receive(pkt, s.epoch.Add(time.Second), 10)
		if err == nil && s.peer.rttSamples > 0 && (s.peer.rtt < 0 || s.peer.rtt > maxRTT) {
			t.Fatalf("RTT %v", s.peer.rtt)
		}
	})
}

// One report as the sender tick builds it: SR with one report block +
// SDES CNAME.
func BenchmarkRTCPBuildReport(b *testing.B) {
	var s rtcpSession
	s.init(0, 0x55)
	now := s.epoch.Add(time.Second)
	in := reportInput{packets: 1000, octets: 160000, recvOK: true, withReport: true,
		recv: receptionState{ssrc: 9, expected: 1000, received: 990, extHighest: 1000, jitterTS: 40}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		in.packets++
		if _, err := s.build(now, in, false); err != nil {
			b.Fatal(err)
		}
	}
}

// Parsing and applying a peer's SR + SDES compound packet.
func BenchmarkRTCPParseReport(b *testing.B) {
	var peer rtcpSession
	peer.init(0, 9)
	pkt, _ := peer.build(peer.epoch, reportInput{packets: 1000, octets: 160000, recvOK: true, withReport: true,
		recv: receptionState{ssrc: 0x55, expected: 1000, received: 990, extHighest: 1000}}, false)
	pkt = append([]byte(nil), pkt...)
	var s rtcpSession
	s.init(0, 0x55)
	now := s.epoch.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.receive(pkt, now, 1000); err != nil {
			b.Fatal(err)
		}
	}
}

// The send tick's RTCP check allocates nothing when no report is due.
func TestRTCPTickIdleAllocatesNothing(t *testing.T) {
	pool, err := transport.NewPortPool(43300, 43399)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cfg := &StreamConfig{Codec: codec.Codecs()[0], Remote: netip.MustParseAddrPort("127.0.0.1:9")}
	e.rtcpTick(cfg, time.Now()) // schedules the first report
	if n := testing.AllocsPerRun(1000, func() { e.rtcpTick(cfg, time.Now()) }); n != 0 {
		t.Fatalf("%v allocations per idle tick", n)
	}
}

// What RTCP adds to every 20 ms send tick when no report is due.
func BenchmarkRTCPTickIdle(b *testing.B) {
	pool, err := transport.NewPortPool(43200, 43299)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	cfg := &StreamConfig{Codec: codec.Codecs()[0], Remote: netip.MustParseAddrPort("127.0.0.1:9")}
	e.rtcp.nextAt.Store(time.Now().Add(time.Hour).UnixNano())
	b.ReportAllocs()
	for b.Loop() {
		e.rtcpTick(cfg, time.Now())
	}
}

// udpOf returns the UDP transport under an endpoint made by NewEndpoint.
func udpOf(e *Endpoint) *transport.UDP {
	return e.t.(*transport.SRTP).Inner().(*transport.UDP)
}

// A closing endpoint sends an RTCP BYE only when it sent RTP or RTCP
// before (RFC 3550 6.3.7): one that stayed quiet (a call that carried no
// media, here a started endpoint with nothing to send) sends nothing at
// all, one that sent silence says BYE.
func TestRTCPByeOnlyAfterSending(t *testing.T) {
	pool, err := transport.NewPortPool(43200, 43299)
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("127.0.0.1")
	for _, quiet := range []bool{true, false} {
		peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		peerRTCP, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: peer.LocalAddr().(*net.UDPAddr).Port + 1})
		if err != nil {
			peer.Close()
			t.Skipf("the port above the peer's is taken: %v", err)
		}
		e, err := NewEndpoint(pool, ip, EndpointOptions{NoIdleSilence: quiet})
		if err != nil {
			t.Fatal(err)
		}
		spec := codec.Codecs()[0]
		e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType, Remote: peer.LocalAddr().(*net.UDPAddr).AddrPort()})
		e.Start()
		time.Sleep(100 * time.Millisecond) // five ticks: silence, unless quiet
		sent := e.Stats().PacketsOut
		e.Close()
		_ = peerRTCP.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 1500)
		n, err := peerRTCP.Read(buf)
		gotBye := false
		if err == nil {
			pkts, perr := rtcp.Unmarshal(buf[:n])
			for _, p := range pkts {
				if _, ok := p.(*rtcp.Goodbye); ok && perr == nil {
					gotBye = true
				}
			}
		}
		peer.Close()
		peerRTCP.Close()
		if quiet && (sent != 0 || err == nil) {
			t.Fatalf("quiet endpoint: %d RTP packets sent, RTCP datagram on close: %v (read error %v), want none", sent, err == nil, err)
		}
		if !quiet && (sent == 0 || !gotBye) {
			t.Fatalf("endpoint that sent %d RTP packets: RTCP BYE on close %v (read error %v)", sent, gotBye, err)
		}
	}
}
