package media

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// StreamConfig is what SDP negotiation decided for one RTP stream.
type StreamConfig struct {
	Codec CodecSpec
	// PayloadType is the payload type agreed for Codec (the offerer's number).
	PayloadType uint8
	// DTMFPayloadType is the agreed telephone-event payload type; 0 means the
	// peer did not offer RFC 4733.
	DTMFPayloadType uint8
	// Remote is where RTP goes until symmetric RTP latches onto the address
	// the peer actually sends from.
	Remote netip.AddrPort
	// Direction restricts the stream: "sendrecv" (default), "sendonly",
	// "recvonly" or "inactive", from this endpoint's point of view.
	Direction string
	// RTCPMux sends RTCP on the RTP port (RFC 5761, SDP a=rtcp-mux).
	// RTCP arriving on either port is read either way.
	RTCPMux bool
	// RemoteRTCP is where RTCP goes without rtcp-mux until the peer's
	// RTCP latches it (SDP a=rtcp); zero means Remote's port + 1.
	RemoteRTCP netip.AddrPort
	// FramesPerPacket is how many 20 ms frames each generated packet
	// carries (the peer's a=ptime: 2 for 40 ms, 3 for 60 ms); 0 or 1
	// means 20 ms. Forwarded packets keep the size they came with.
	FramesPerPacket int
	// SRTP, when set, protects the stream (SDES keys from the SDP
	// exchange): RTP and RTCP become SRTP and SRTCP, and packets that fail
	// authentication are dropped and counted. Nil means plain RTP.
	SRTP *SRTPKeys
	// NATSource is the IP address the peer's signaling came from. When
	// Remote is a private address (RFC 1918, RFC 6598 shared space,
	// IPv6 ULA or link-local: a phone behind NAT that did not learn its
	// public address), RTP from NATSource may latch too, but only within
	// EndpointOptions.NATLatchWindow of Configure. Zero: no NAT rule.
	NATSource netip.Addr
}

// EndpointStats are counters of one endpoint. Reading them is cheap.
type EndpointStats struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// Dropped counts packets refused: from an unexpected source after
	// latching, malformed, or of an unknown payload type.
	Dropped  uint64
	LastRecv time.Time
	// Expected and Lost follow RFC 3550 A.3 for the current source (late
	// and duplicate packets make Lost smaller, never negative); Jitter is
	// the RFC 3550 interarrival jitter estimate.
	Expected, Lost uint64
	Jitter         time.Duration

	// RTCP (rtcp.go): compound packets sent and accepted, and those
	// dropped (malformed or not from the peer's address).
	RTCPIn, RTCPOut, RTCPDropped uint64
	// RemoteReports counts the peer's report blocks about our stream;
	// RemoteLost (cumulative), RemoteFractionLost (0–1, over the peer's
	// last report interval) and RemoteJitter are from the latest one.
	RemoteReports      uint64
	RemoteLost         uint64
	RemoteFractionLost float64
	RemoteJitter       time.Duration
	// RTT is the latest round-trip time from the peer's LSR/DLSR (RFC 3550
	// section 6.4.1); RTTSamples counts the measurements (RTT is only
	// meaningful once it is above 0).
	RTT        time.Duration
	RTTSamples uint64
	// SRTPAuthFailures counts SRTP and SRTCP packets dropped because
	// they failed authentication (wrong key, tampered, replayed); they
	// are in Dropped or RTCPDropped too.
	SRTPAuthFailures uint64
	// RemoteBye is set once the peer sent an RTCP BYE.
	RemoteBye bool
	// Unsent counts RTP packets withheld because the peer had not yet
	// proven that it wants them (EndpointOptions.UnverifiedBudget).
	Unsent uint64
	// MOS estimates what this endpoint receives (our loss and jitter),
	// RemoteMOS what the peer receives (its reports), both with the
	// E-model (EModel) and RTT/2 as network delay; 0 means no data yet.
	MOS, RemoteMOS float64
}

// Endpoint is one RTP stream on one UDP port (RTCP on the next port, or
// on the same one with rtcp-mux; see rtcp.go): a reader goroutine that
// queues arriving audio in a jitter buffer (and reports RFC 4733 DTMF to a
// callback), and a 20 ms tick that plays one frame out of the jitter
// buffer to a Sink, then reads a frame from the current Source, encodes it
// and sends it. Packets never pass through an actor.
//
// Cost on the media path: one goroutine per direction, no allocation per
// packet once running.
type Endpoint struct {
	pt    PacketTransport // set: packets go through it, not a socket (NewPacketEndpoint)
	conn  *net.UDPConn
	port  int
	pool  *PortPool
	local netip.AddrPort
	log   *slog.Logger

	mu      sync.Mutex // guards play, dtmfQ, started, closed
	cfg     atomic.Pointer[StreamConfig]
	play    *playback
	dtmfQ   []dtmfRequest
	started bool
	closed  bool

	remote  atomic.Pointer[netip.AddrPort]
	latched atomic.Bool
	// Send gating (see EndpointOptions.UnverifiedBudget): until proven,
	// each packet out takes one from budget; none left means withheld.
	gated        bool
	proven       atomic.Bool
	budget       atomic.Int64
	unsent       atomic.Uint64
	natWindow    time.Duration
	configuredAt atomic.Int64            // unix ns of the last Configure that moved Remote
	sink         atomic.Pointer[sinkBox] // mainSink and tapSink as one, for the tick
	muted        atomic.Bool             // inbound audio ignored (SetMuted)
	// mainSink is the topology's consumer (a bridge pipe, a mixer
	// participant); tapSink the observers (recording, VAD). Guarded by mu.
	mainSink, tapSink Sink
	onDTMF            atomic.Pointer[func(DTMFEvent)]
	panicState
	forward atomic.Pointer[Endpoint] // passthrough target of inbound RTP
	fedBy   atomic.Int32             // how many endpoints forward into this one
	// relay receives the RFC 4733 digits this endpoint gets, re-sent as
	// new events: the DTMF path of a transcoding bridge.
	relay atomic.Pointer[Endpoint]
	// srtp protects the stream when the SDP exchange negotiated SDES keys
	// (srtp.go); nil means plain RTP.
	srtp       atomic.Pointer[SRTPContext]
	srtpFails  atomic.Uint64
	srtpLogged atomic.Int64 // when an SRTP failure was last logged (rate limit)

	out      outState
	snd      sender
	pacer    *Pacer
	unpace   func()
	isClosed atomic.Bool

	onTimeout     func()
	mediaTimeout  time.Duration
	noIdleSilence bool

	ssrc uint32
	rtcp rtcpSession

	rstats                recvStats
	rxs                   rxLoopState // the RTP reader's own state
	poller                *rxPoller   // reads both sockets when set (else two reader goroutines)
	pollFDs               [2]int
	rx                    rxPath // jitter buffer and decode (endpoint_jitter.go)
	packetsIn, packetsOut atomic.Uint64
	bytesIn, bytesOut     atomic.Uint64
	dropped               atomic.Uint64
	lastRecv              atomic.Int64

	done chan struct{}
	wg   sync.WaitGroup
}

type sinkBox struct{ s Sink }

// outState is the outbound RTP numbering, shared by the sender goroutine
// (generated audio, DTMF) and by a bridged peer's reader goroutine
// (forwarded packets), so the far end sees one continuous stream.
type outState struct {
	mu      sync.Mutex
	seq     uint16 // next sequence number
	clockTS uint32 // RTP clock, advanced every 20 ms by the sender
	// Forwarding run: offsets that map the source's numbering onto ours,
	// kept while the source SSRC stays the same so gaps and timing survive.
	fwdOn  bool
	fwdSrc uint32
	seqOff uint16
	tsOff  uint32
}

type playback struct {
	src  Source
	done func(error)
}

type dtmfRequest struct {
	digit    rune
	duration time.Duration
}

// EndpointOptions tune an endpoint. The zero value is usable.
type EndpointOptions struct {
	Logger *slog.Logger
	// MediaTimeout is how long the endpoint waits without receiving RTP
	// (while the stream is meant to receive) before calling OnMediaTimeout.
	// Zero disables the check.
	MediaTimeout time.Duration
	// OnMediaTimeout is called once, from the sender goroutine, when the
	// media timeout expires.
	OnMediaTimeout func()
	// NoIdleSilence stops the endpoint from sending silence frames while
	// nothing plays (by default an answered stream never goes quiet).
	NoIdleSilence bool
	// Pacer, if set, drives the endpoint's 20 ms send clock; otherwise the
	// endpoint runs a ticker goroutine of its own.
	Pacer *Pacer
	// RTCPInterval is the nominal time between RTCP reports (randomised
	// 0.5–1.5 times each); zero means DefaultRTCPInterval, below 10 ms is
	// raised to 10 ms, negative sends no reports (received RTCP is still
	// read).
	RTCPInterval time.Duration
	// UnverifiedBudget, when above zero, makes the endpoint hold its RTP
	// until the peer has proven that it wants it — a packet from the
	// configured remote address (which also latches), or Verify (the
	// signaling saw the ACK of our 2xx) — and a peer that never does gets
	// at most this many packets (generated, DTMF or forwarded) and no
	// RTCP: an INVITE naming a third party's address cannot turn the
	// server into an amplifier. A gated endpoint with no remote
	// configured latches nothing. Zero sends without proof, and latches
	// the first source when no remote is configured (trusted, in-process
	// peers). With a remote configured, latching is strict either way:
	// its IP only, or the NAT rule (StreamConfig.NATSource).
	UnverifiedBudget int
	// NATLatchWindow bounds the NAT latching rule (StreamConfig.NATSource)
	// to this long after Configure; zero means 10 s.
	NATLatchWindow time.Duration
}

// NewEndpoint binds a UDP socket from pool on ip. The endpoint does nothing
// until Configure and Start are called, so its address can go into an SDP
// answer before negotiation finishes.
func NewEndpoint(pool *PortPool, ip netip.Addr, opts EndpointOptions) (*Endpoint, error) {
	conn, rtcpConn, port, err := pool.ListenPair(ip)
	if err != nil {
		return nil, err
	}
	e := newStream(opts)
	e.conn, e.port, e.pool, e.local = conn, port, pool, netip.AddrPortFrom(ip, uint16(port))
	e.rtcp.init(rtcpConn, opts.RTCPInterval, e.ssrc)
	return e, nil
}

// newStream makes the transport-independent part of an endpoint: the
// stream's state and options; NewEndpoint and NewPacketEndpoint add what
// carries its packets.
func newStream(opts EndpointOptions) *Endpoint {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	e := &Endpoint{
		log:           log,
		ssrc:          binary.BigEndian.Uint32(b[:]),
		done:          make(chan struct{}),
		onTimeout:     opts.OnMediaTimeout,
		noIdleSilence: opts.NoIdleSilence,
		pacer:         opts.Pacer,
		mediaTimeout:  opts.MediaTimeout,
		gated:         opts.UnverifiedBudget > 0,
		natWindow:     opts.NATLatchWindow,
	}
	if e.natWindow <= 0 {
		e.natWindow = 10 * time.Second
	}
	e.budget.Store(int64(opts.UnverifiedBudget))
	return e
}

// LocalAddr is the address the endpoint receives on.
func (e *Endpoint) LocalAddr() netip.AddrPort { return e.local }

// Configure sets the negotiated stream parameters. It may be called again
// (re-INVITE); a changed remote address un-latches symmetric RTP, and
// changed SRTP keys (StreamConfig.SRTP) replace the SRTP context.
func (e *Endpoint) Configure(cfg StreamConfig) {
	if cfg.Direction == "" {
		cfg.Direction = "sendrecv"
	}
	if e.pt != nil {
		cfg.Remote = packetPeer // the transport knows where packets go
	}
	var old netip.AddrPort
	var oldKeys *SRTPKeys
	prev := e.cfg.Load()
	if prev != nil {
		oldKeys = prev.SRTP
	}
	if prev == nil || !cfg.SRTP.Equal(oldKeys) {
		e.setSRTP(cfg.SRTP)
	}
	if prev := e.cfg.Swap(&cfg); prev != nil {
		old = prev.Remote
	}
	if old != cfg.Remote || e.remote.Load() == nil {
		r := cfg.Remote
		e.configuredAt.Store(time.Now().UnixNano())
		e.remote.Store(&r)
		e.latched.Store(false)
	}
}

// Verify records that the peer has proven it wants this endpoint's RTP
// (the ACK of a 2xx we sent arrived, or the peer answered our INVITE), so
// an endpoint with an UnverifiedBudget sends without limit from now on. A
// packet from the configured remote address verifies too.
func (e *Endpoint) Verify() { e.proven.Store(true) }

// Verified reports whether the peer has proven it wants our RTP (always
// true without an UnverifiedBudget).
func (e *Endpoint) Verified() bool { return !e.gated || e.proven.Load() }

// mayLatch reports whether the first packet from from may latch the
// stream: it must come from the configured remote's IP (its port may
// differ: symmetric RTP through NAT), or from the signaling source of a
// peer that advertised a private address, soon after Configure. Without
// send gating and with no remote configured, any first source latches.
func (e *Endpoint) mayLatch(from netip.AddrPort) bool {
	cfg := e.cfg.Load()
	if cfg == nil || !cfg.Remote.IsValid() {
		return !e.gated
	}
	if from.Addr() == cfg.Remote.Addr() {
		return true
	}
	if !cfg.NATSource.IsValid() || from.Addr() != cfg.NATSource || !isPrivateAddr(cfg.Remote.Addr()) {
		return false
	}
	return time.Since(time.Unix(0, e.configuredAt.Load())) < e.natWindow
}

var sharedAddrSpace = netip.MustParsePrefix("100.64.0.0/10") // RFC 6598, carrier-grade NAT

// isPrivateAddr reports addresses that only mean something behind a NAT.
func isPrivateAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsPrivate() || a.IsLinkLocalUnicast() || sharedAddrSpace.Contains(a)
}

// Config returns the current stream configuration.
func (e *Endpoint) Config() StreamConfig {
	if c := e.cfg.Load(); c != nil {
		return *c
	}
	return StreamConfig{}
}

// Start launches the reader and sender goroutines. Configure first.
func (e *Endpoint) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.closed {
		return
	}
	e.started = true
	e.lastRecv.Store(time.Now().UnixNano())
	e.initSender()
	if e.pt == nil && !e.startPolling() {
		e.wg.Add(2)
		go e.readLoop()
		go e.rtcpReadLoop()
	}
	if e.pacer != nil {
		e.unpace = e.pacer.add(e)
	} else {
		e.wg.Add(1)
		go e.sendLoop()
	}
}

// SetSink directs decoded inbound audio to s (nil stops delivery): one
// frame every 20 ms out of the jitter buffer (concealed where packets are
// missing), from the endpoint's send tick — a Pacer shard goroutine shared
// with other endpoints — so the sink must not block.
//
// SetSink is for whoever owns the leg's media topology (a transcoding
// bridge, a mixer); observers use SetTaps, which a topology change leaves
// alone.
func (e *Endpoint) SetSink(s Sink) {
	e.mu.Lock()
	e.mainSink = s
	e.storeSinks()
	e.mu.Unlock()
}

// ClearSink removes s as the SetSink sink, if it still is: an owner that
// lets go of the endpoint never clears a sink set by the next owner.
func (e *Endpoint) ClearSink(s Sink) {
	e.mu.Lock()
	if e.mainSink == s {
		e.mainSink = nil
		e.storeSinks()
	}
	e.mu.Unlock()
}

// SetTaps sets the observers of decoded inbound audio (a recorder, voice
// activity detection): they get every frame the SetSink sink gets, after
// it, whatever the topology. nil removes them. Same rules as SetSink.
func (e *Endpoint) SetTaps(s Sink) {
	e.mu.Lock()
	e.tapSink = s
	e.storeSinks()
	e.mu.Unlock()
}

// storeSinks publishes mainSink and tapSink as one sink to the tick.
// Caller holds e.mu.
func (e *Endpoint) storeSinks() {
	if s := Tee(e.mainSink, e.tapSink); s != nil {
		e.sink.Store(&sinkBox{s})
	} else {
		e.sink.Store(nil)
	}
}

// SetMuted mutes or unmutes what the far end says: while muted its audio
// packets are neither forwarded by a passthrough bridge nor decoded (sinks
// get the jitter buffer's silence); its digits still arrive. Cost on the
// media path: one atomic load per packet.
func (e *Endpoint) SetMuted(muted bool) { e.muted.Store(muted) }

// Muted reports whether SetMuted muted the endpoint.
func (e *Endpoint) Muted() bool { return e.muted.Load() }

// OnDTMF sets the callback for received digits; it runs on the reader
// goroutine (RFC 4733) or the 20 ms tick (in-band digits) and must not
// block.
func (e *Endpoint) OnDTMF(fn func(DTMFEvent)) {
	if fn == nil {
		e.onDTMF.Store(nil)
		return
	}
	e.onDTMF.Store(&fn)
}

// InjectDTMF reports a digit that arrived by signaling (SIP INFO) through
// the same callback as RFC 4733 digits, so consumers see one stream.
func (e *Endpoint) InjectDTMF(ev DTMFEvent) {
	if fn := e.onDTMF.Load(); fn != nil {
		e.callDTMF(fn, ev)
	}
}

// Play makes src the endpoint's outbound audio, replacing (and finishing
// with ErrInterrupted) whatever played before. done is called once, from the
// sender goroutine or from Stop/Close, with nil when src reached io.EOF, the
// source's error, ErrInterrupted when replaced or stopped, or ErrClosed.
// The returned function stops this playback if it is still current.
func (e *Endpoint) Play(src Source, done func(error)) (stop func()) {
	p := &playback{src: src, done: done}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return func() {}
	}
	prev := e.play
	e.play = p
	e.mu.Unlock()
	if prev != nil && prev.done != nil {
		prev.done(ErrInterrupted)
	}
	return func() { e.stopPlayback(p, ErrInterrupted) }
}

// ErrInterrupted reports a playback that was stopped or replaced.
var ErrInterrupted = errors.New("media: playback interrupted")

func (e *Endpoint) stopPlayback(p *playback, cause error) {
	e.mu.Lock()
	if e.play != p {
		e.mu.Unlock()
		return
	}
	e.play = nil
	e.mu.Unlock()
	if p.done != nil {
		p.done(cause)
	}
}

// SendDTMF queues an RFC 4733 digit of the given duration (default 100 ms).
// It fails when the peer did not negotiate telephone-event.
func (e *Endpoint) SendDTMF(digit rune, duration time.Duration) error {
	if _, ok := DTMFCode(digit); !ok {
		return fmt.Errorf("media: %q is not a DTMF digit", digit)
	}
	if duration <= 0 {
		duration = 100 * time.Millisecond
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.cfg.Load(); c == nil || c.DTMFPayloadType == 0 {
		return errors.New("media: peer did not negotiate telephone-event")
	}
	e.dtmfQ = append(e.dtmfQ, dtmfRequest{digit, duration})
	return nil
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() EndpointStats {
	st := EndpointStats{
		PacketsIn: e.packetsIn.Load(), PacketsOut: e.packetsOut.Load(),
		BytesIn: e.bytesIn.Load(), BytesOut: e.bytesOut.Load(),
		Dropped:          e.dropped.Load(),
		LastRecv:         time.Unix(0, e.lastRecv.Load()),
		SRTPAuthFailures: e.srtpFails.Load(),
		Unsent:           e.unsent.Load(),
	}
	st.Expected, st.Lost, st.Jitter = e.rstats.snapshot()
	e.rtcpStats(&st)
	return st
}

// Close stops both goroutines, finishes any playback with ErrClosed, closes
// the socket and returns the port to the pool. It is safe to call twice.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.isClosed.Store(true)
	p := e.play
	e.play = nil
	unpace, started := e.unpace, e.started
	e.mu.Unlock()
	if unpace != nil {
		unpace()
	}
	if started {
		e.sendRTCP(time.Now(), e.cfg.Load(), true) // RTCP BYE
	}
	close(e.done)
	if e.poller != nil {
		// Out of the poller before the sockets close (their numbers
		// may be reused at once).
		e.poller.remove(e.pollFDs[0])
		e.poller.remove(e.pollFDs[1])
	}
	var err error
	polled := e.poller != nil
	if e.pt == nil && !polled {
		// Reader goroutines return when their sockets close.
		err = e.conn.Close()
		e.rtcp.conn.Close()
	}
	e.wg.Wait()
	if e.pt == nil && polled {
		// Nobody reads the sockets any more: the pool may keep them
		// bound for the port's next call (PortPool.KeepSockets).
		e.pool.ReleasePair(e.port, e.conn, e.rtcp.conn)
	} else if e.pt == nil {
		e.pool.Release(e.port)
	}
	if p != nil && p.done != nil {
		p.done(ErrClosed)
	}
	return err
}

func (e *Endpoint) readLoop() {
	defer e.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP-induced errors (port unreachable) are transient on UDP.
			select {
			case <-e.done:
				return
			default:
				continue
			}
		}
		e.handleRTP(buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// startPolling hands both sockets to the pacer's poller; false means the
// endpoint reads them with its own goroutines.
func (e *Endpoint) startPolling() bool {
	if e.pacer == nil {
		return false
	}
	pl := e.pacer.poller()
	if pl == nil {
		return false
	}
	rtpFD, err := pl.add(e.conn, e, false)
	if err != nil {
		e.log.Warn("media: socket poller refused the RTP socket; using a reader goroutine", "error", err)
		return false
	}
	rtcpFD, err := pl.add(e.rtcp.conn, e, true)
	if err != nil {
		e.log.Warn("media: socket poller refused the RTCP socket; using reader goroutines", "error", err)
		pl.remove(rtpFD)
		return false
	}
	e.poller, e.pollFDs = pl, [2]int{rtpFD, rtcpFD}
	return true
}

// rxLoopState is the reader's own state between packets. Exactly one
// goroutine reads an endpoint's RTP socket (its readLoop, or the Pacer's
// poller), so it needs no lock.
type rxLoopState struct {
	hdr         rtp.Header
	lastEventTS uint32
	haveEvent   bool
}

// handleRTP processes one datagram from the RTP socket (pkt may be
// rewritten in place and is not kept): RTCP demultiplexing, latching,
// statistics, forwarding, RFC 4733 and the jitter buffer.
func (e *Endpoint) handleRTP(pkt []byte, from netip.AddrPort) {
	st := &e.rxs
	n := len(pkt)
	if isRTCP(pkt) { // RFC 5761 demultiplexing
		e.handleRTCP(pkt, from, false)
		return
	}
	if sc := e.srtp.Load(); sc != nil {
		var err error
		if pkt, err = sc.unprotectRTP(pkt); err != nil {
			e.dropped.Add(1)
			e.srtpFailed(err, from)
			return
		}
		n = len(pkt)
	}
	hdr := &st.hdr
	hl, err := hdr.Unmarshal(pkt)
	if err != nil || hdr.Version != 2 {
		e.dropped.Add(1)
		return
	}
	if !e.latched.Load() {
		if !e.mayLatch(from) {
			// A stranger guessing the port before the peer's first
			// packet: never latch onto it.
			e.dropped.Add(1)
			return
		}
		e.remote.Store(&from)
		e.latched.Store(true)
		e.proven.Store(true)
	} else if r := e.remote.Load(); r == nil || *r != from {
		e.dropped.Add(1)
		return
	}
	payload := pkt[hl:n]
	if hdr.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		if pad > len(payload) {
			e.dropped.Add(1)
			return
		}
		payload = payload[:len(payload)-pad]
	}
	e.packetsIn.Add(1)
	e.bytesIn.Add(uint64(n))
	now := time.Now()
	e.lastRecv.Store(now.UnixNano())

	cfg := e.cfg.Load()
	if cfg == nil {
		return
	}
	e.rstats.update(hdr.SSRC, hdr.SequenceNumber, hdr.Timestamp, now, cfg.Codec.ClockRate)
	isDTMF := cfg.DTMFPayloadType != 0 && hdr.PayloadType == cfg.DTMFPayloadType
	if !isDTMF && e.muted.Load() {
		return
	}
	if dst := e.forward.Load(); dst != nil && (isDTMF || hdr.PayloadType == cfg.PayloadType) {
		dst.forwardPacket(hdr, pkt[:hl+len(payload)], hl, isDTMF)
	}
	switch {
	case isDTMF:
		ev, err := ParseTelephoneEvent(payload)
		if err != nil {
			e.dropped.Add(1)
			return
		}
		if st.haveEvent && hdr.Timestamp == st.lastEventTS {
			return // update or end packet of an event already reported
		}
		st.haveEvent, st.lastEventTS = true, hdr.Timestamp
		d := DTMFDigit(ev.Event)
		if d == 0 {
			return
		}
		if r := e.relay.Load(); r != nil {
			_ = r.SendDTMF(d, 0) // the far leg may lack telephone-event: then the digit stays here
		}
		if fn := e.onDTMF.Load(); fn != nil {
			e.callDTMF(fn, DTMFEvent{Digit: d, Duration: time.Duration(ev.Duration) * time.Second / time.Duration(cfg.Codec.ClockRate), Source: "rfc4733"})
		}
	case hdr.PayloadType == cfg.PayloadType && cfg.Codec.New != nil:
		// Into the jitter buffer; decoded on the 20 ms tick.
		e.pushAudio(cfg, hdr, payload, now)
	case hdr.PayloadType == 13: // comfort noise: nothing to decode
	default:
		e.dropped.Add(1)
	}
}

// closeCodec frees what a codec holds outside the Go heap (libopus state)
// as soon as its user is done with it, rather than when it is collected.
func closeCodec(c Codec) {
	if cl, ok := c.(interface{ Close() }); ok {
		cl.Close()
	}
}

// sender is the state of an endpoint's outbound stream between 20 ms
// ticks. Only one goroutine runs tick at a time: the endpoint's own
// sendLoop, or the Pacer shard the endpoint belongs to.
type sender struct {
	buf     []byte
	hdr     rtp.Header
	frame   *Frame
	enc     Codec
	encName string
	silence []byte // one encoded frame of silence for the current codec
	marker  bool
	dtmf    *dtmfSender
	timeout bool
	// pending is a packet being filled with FramesPerPacket frames:
	// header plus the frames so far, and how many there are.
	pending       []byte
	pendingFrames int
}

func (e *Endpoint) initSender() {
	var b [6]byte
	_, _ = rand.Read(b[:])
	e.out.mu.Lock()
	e.out.seq = binary.BigEndian.Uint16(b[:2])
	e.out.clockTS = binary.BigEndian.Uint32(b[2:]) >> 1
	e.out.mu.Unlock()
	e.snd = sender{buf: make([]byte, 1500), hdr: rtp.Header{Version: 2, SSRC: e.ssrc}, marker: true}
}

// sendLoop paces an endpoint that has no Pacer with its own ticker.
func (e *Endpoint) sendLoop() {
	defer e.wg.Done()
	tick := time.NewTicker(FrameDurationMs * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-tick.C:
			e.mediaTick()
		}
	}
}

// sendTick produces this 20 ms frame's packet: a DTMF event packet, the
// next frame of the current Source, silence, or nothing (on hold, or while
// a bridge feeds the endpoint).
func (e *Endpoint) sendTick(now time.Time) {
	if e.isClosed.Load() {
		return
	}
	s := &e.snd
	cfgp := e.cfg.Load()
	if cfgp == nil {
		return
	}
	cfg := *cfgp
	e.rtcpTick(cfgp, now)
	e.mu.Lock()
	p := e.play
	if s.dtmf == nil && len(e.dtmfQ) > 0 {
		r := e.dtmfQ[0]
		e.dtmfQ = e.dtmfQ[1:]
		code, _ := DTMFCode(r.digit)
		step := uint16(cfg.Codec.TimestampStep())
		s.dtmf = &dtmfSender{code: code, step: step, ts: e.out.peekTS(),
			total: uint16(min(int64(r.duration)*int64(cfg.Codec.ClockRate)/int64(time.Second), 0xffff))}
	}
	e.mu.Unlock()

	if !s.timeout && e.mediaTimeout > 0 && e.onTimeout != nil && cfg.Direction != "sendonly" && cfg.Direction != "inactive" {
		if now.Sub(time.Unix(0, e.lastRecv.Load())) > e.mediaTimeout {
			s.timeout = true
			go e.onTimeout()
		}
	}
	if cfg.Codec.New == nil {
		return
	}
	if s.enc == nil || s.encName != cfg.Codec.Name {
		// The encoder of a closed endpoint is left to the garbage
		// collector (a Pacer tick may still be using it).
		closeCodec(s.enc)
		s.enc, s.encName = cfg.Codec.New(), cfg.Codec.Name
		s.pending, s.pendingFrames = nil, 0
		s.frame = NewFrame(cfg.Codec.SampleRate)
		s.silence = s.enc.Encode(nil, make([]int16, len(s.frame.Samples)))
	}
	step := cfg.Codec.TimestampStep()
	// Pull audio even while a digit is sent so prompts keep their timing.
	haveAudio := false
	if p != nil {
		err := e.readSource(p.src, s.frame)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			e.stopPlayback(p, err)
		} else {
			haveAudio = true
		}
	}
	send := cfg.Direction == "sendrecv" || cfg.Direction == "sendonly"
	remote := e.remote.Load()
	hdr := &s.hdr
	// Bridged (forwarded packets go out from the peer's reader), on hold,
	// or told to stay quiet: nothing to generate this tick.
	idle := !haveAudio && (e.fedBy.Load() > 0 || !send || e.noIdleSilence)
	if s.pendingFrames > 0 && (s.dtmf != nil || !send || idle) {
		// A digit, hold or a bridge interrupts a multi-frame packet:
		// send what it has.
		e.flushPending(send, remote)
	}
	if s.dtmf != nil {
		ev, first, last := s.dtmf.next()
		hdr.PayloadType = cfg.DTMFPayloadType
		hdr.Marker = first
		hdr.Timestamp = s.dtmf.ts
		hdr.SequenceNumber, _ = e.out.tick(step, true)
		n, _ := hdr.MarshalTo(s.buf)
		out := ev.AppendTo(s.buf[:n])
		if send && remote != nil && remote.IsValid() {
			e.write(out, *remote)
		}
		if last {
			s.dtmf = nil
			s.marker = true
		}
		return
	}
	if idle {
		// Keep the clock running and mark the next talkspurt.
		e.out.tick(step, false)
		s.marker = true
		return
	}
	var out []byte
	if s.pendingFrames == 0 {
		hdr.PayloadType = cfg.PayloadType
		hdr.Marker = s.marker
		hdr.SequenceNumber, hdr.Timestamp = e.out.tick(step, true)
		s.marker = false
		n, _ := hdr.MarshalTo(s.buf)
		out = s.buf[:n]
	} else {
		e.out.tick(step, false) // the packet's timestamp is its first frame's
		out = s.pending
	}
	if haveAudio {
		out = s.enc.Encode(out, s.frame.Samples)
	} else {
		// Nothing to play: send silence, so the far end's RTP timeout
		// (carriers hang up silent calls) and NAT bindings stay happy.
		out = append(out, s.silence...)
	}
	if fpp := cfg.FramesPerPacket; fpp > 1 && s.pendingFrames+1 < fpp {
		s.pending, s.pendingFrames = out, s.pendingFrames+1
		return
	}
	s.pending, s.pendingFrames = nil, 0
	if send && remote != nil && remote.IsValid() {
		e.write(out, *remote)
	}
}

// flushPending sends a partly filled multi-frame packet.
func (e *Endpoint) flushPending(send bool, remote *netip.AddrPort) {
	s := &e.snd
	if send && remote != nil && remote.IsValid() {
		e.write(s.pending, *remote)
	}
	s.pending, s.pendingFrames = nil, 0
}

// write sends an RTP packet, as SRTP when the stream is protected.
// BytesOut counts the RTP size (what RTCP sender reports describe).
func (e *Endpoint) write(pkt []byte, to netip.AddrPort) {
	if e.gated && !e.proven.Load() && e.budget.Add(-1) < 0 {
		e.unsent.Add(1)
		return
	}
	if sc := e.srtp.Load(); sc != nil {
		if err := sc.protectRTP(pkt, func(out []byte) { e.send(out, to, len(pkt)) }); err != nil {
			e.srtpFailed(err, to)
		}
		return
	}
	e.send(pkt, to, len(pkt))
}

func (e *Endpoint) send(pkt []byte, to netip.AddrPort, size int) {
	if e.pt != nil {
		if e.pt.WriteRTP(pkt) != nil {
			return
		}
	} else if e.isClosed.Load() {
		// Closed: its socket may be the pool's again (KeepSockets), soon
		// another call's; a bridge still wired to it sends nothing.
		return
	} else if _, err := e.conn.WriteToUDPAddrPort(pkt, to); err != nil {
		return
	}
	e.packetsOut.Add(1)
	e.bytesOut.Add(uint64(size))
}

// tick advances the RTP clock by one frame. When send is true it also takes
// a sequence number for a generated packet, returning it with the frame's
// timestamp, and ends any forwarding run.
func (o *outState) tick(step uint32, send bool) (seq uint16, ts uint32) {
	o.mu.Lock()
	ts = o.clockTS
	o.clockTS += step
	if send {
		seq = o.seq
		o.seq++
		o.fwdOn = false
	}
	o.mu.Unlock()
	return seq, ts
}

func (o *outState) peekTS() uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.clockTS
}

// ForwardTo makes e pass every inbound audio and telephone-event packet to
// dst unchanged but for its header: dst's SSRC, payload type, and sequence
// number and timestamp continuing dst's own. Nothing is decoded and nothing
// is allocated. nil stops forwarding. Decoding to the sink and DTMF
// reporting go on as before.
func (e *Endpoint) ForwardTo(dst *Endpoint) {
	if old := e.forward.Swap(dst); old != nil {
		old.fedBy.Add(-1)
	}
	if dst != nil {
		dst.fedBy.Add(1)
	}
}

// forwardPacket sends pkt (an RTP packet whose header is hl bytes long, in
// the source endpoint's read buffer) out of e. The header is rewritten in
// place: the 12 bytes before the payload become the new fixed header (CSRCs
// and extensions are dropped), so the payload is never copied.
func (e *Endpoint) forwardPacket(h *rtp.Header, pkt []byte, hl int, dtmf bool) {
	cfg := e.cfg.Load()
	remote := e.remote.Load()
	if cfg == nil || remote == nil || !remote.IsValid() || (cfg.Direction != "sendrecv" && cfg.Direction != "sendonly") {
		return
	}
	pt := cfg.PayloadType
	if dtmf {
		if cfg.DTMFPayloadType == 0 {
			return
		}
		pt = cfg.DTMFPayloadType
	}
	o := &e.out
	o.mu.Lock()
	marker := h.Marker
	if !o.fwdOn || o.fwdSrc != h.SSRC {
		o.fwdOn, o.fwdSrc = true, h.SSRC
		o.tsOff = o.clockTS - h.Timestamp
		o.seqOff = o.seq - h.SequenceNumber
		marker = !dtmf
	}
	seq := h.SequenceNumber + o.seqOff
	if int16(seq-o.seq) >= 0 {
		o.seq = seq + 1
	}
	ts := h.Timestamp + o.tsOff
	o.mu.Unlock()

	out := pkt[hl-12:]
	out[0] = 0x80
	out[1] = pt & 0x7f
	if marker {
		out[1] |= 0x80
	}
	binary.BigEndian.PutUint16(out[2:], seq)
	binary.BigEndian.PutUint32(out[4:], ts)
	binary.BigEndian.PutUint32(out[8:], e.ssrc)
	e.write(out, *remote)
}
