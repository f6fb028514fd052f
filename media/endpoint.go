package media

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// StreamConfig is what SDP negotiation decided for one RTP stream.
type StreamConfig struct {
	Codec codec.CodecSpec
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
	// Streams on a packet transport (NewPacketEndpoint) ignore it: their
	// carrier protects the packets.
	SRTP *transport.SRTPKeys
	// NATSource is the IP address the peer's signaling came from. When
	// Remote is a private address (RFC 1918, RFC 6598 shared space,
	// IPv6 ULA or link-local: a phone behind NAT that did not learn its
	// public address), RTP from NATSource may latch too, but only within
	// EndpointOptions.NATLatchWindow of Configure. Zero: no NAT rule.
	NATSource netip.Addr
}

// peer is the part of the configuration the transport acts on.
func (c *StreamConfig) peer() transport.Peer {
	return transport.Peer{Remote: c.Remote, RTCPMux: c.RTCPMux, RemoteRTCP: c.RemoteRTCP, NATSource: c.NATSource, SRTP: c.SRTP}
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

// Endpoint is one RTP stream: what its transport reads (a UDP port pair,
// a WebRTC track, memory; see package transport) is queued in a jitter
// buffer (and RFC 4733 DTMF reported to a callback), and a 20 ms tick
// plays one frame out of the jitter buffer to a Sink, then reads a frame
// from the current Source, encodes it and writes it to the transport.
// The stream never sees a socket, and packets never pass through an actor.
//
// Cost on the media path: the transport's reader and a Pacer shard (or a
// ticker goroutine) drive it; no allocation per packet once running.
type Endpoint struct {
	t      transport.Transport
	packet bool // inbound packets come through ReceivePacket (NewPacketEndpoint)
	log    *slog.Logger

	mu      sync.Mutex // guards play, dtmfQ, started, closed
	cfg     atomic.Pointer[StreamConfig]
	play    *playback
	dtmfQ   []dtmfRequest
	started bool
	closed  bool

	sink  atomic.Pointer[sinkBox] // mainSink and tapSink as one, for the tick
	muted atomic.Bool             // inbound audio ignored (SetMuted)
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

	out      outState
	snd      sender
	pacer    *Pacer
	unpace   func()
	pace     paceSlot // place in the pacer's shard (pacer.go)
	isClosed atomic.Bool
	// idleOK: the endpoint's media timeout and RTCP interval are long
	// enough for the pacer's slow list (minIdleInterval).
	idleOK bool

	onTimeout     func()
	mediaTimeout  time.Duration
	noIdleSilence bool

	ssrc uint32
	rtcp rtcpSession

	rstats                recvStats
	rxs                   rxLoopState // the RTP reader's own state
	rx                    rxPath      // jitter buffer and decode (endpoint_jitter.go)
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
	// Idle on the pacer's slow list, no tick advances clockTS: it is
	// idleTS plus one idleStep per 20 ms since idleAt (catchUp).
	idle     bool
	idleAt   time.Time
	idleTS   uint32
	idleStep uint32
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
	// Zero disables the check. An idle endpoint on a Pacer (nothing to
	// play, send or decode) checks it every 240 ms instead of every tick;
	// a timeout or RTCPInterval under 960 ms keeps the endpoint ticked
	// every 20 ms.
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
	// UnverifiedBudget, NATLatchWindow and RTCPOnRTPPort configure
	// NewEndpoint's UDP transport: see transport.UDPOptions.
	UnverifiedBudget int
	RTCPOnRTPPort    bool
	NATLatchWindow   time.Duration
}

// NewEndpoint makes a stream on a UDP transport (an RTP/RTCP port pair
// from pool on ip, read by the Pacer's readers when opts.Pacer is set)
// wrapped in SRTP, which stays plain RTP unless Configure brings keys.
// The endpoint does nothing until Configure and Start are called, so its
// address can go into an SDP answer before negotiation finishes.
func NewEndpoint(pool *transport.PortPool, ip netip.Addr, opts EndpointOptions) (*Endpoint, error) {
	var readers *transport.Readers
	if opts.Pacer != nil {
		readers = opts.Pacer.readers
	}
	u, err := transport.NewUDP(pool, ip, transport.UDPOptions{Logger: opts.Logger, Readers: readers,
		UnverifiedBudget: opts.UnverifiedBudget, NATLatchWindow: opts.NATLatchWindow, RTCPOnRTPPort: opts.RTCPOnRTPPort})
	if err != nil {
		return nil, err
	}
	return NewStream(transport.NewSRTP(u, opts.Logger), opts), nil
}

// NewStream makes an endpoint whose packets t carries; t is started with
// the endpoint and closed with it. Configure and Start it as usual.
func NewStream(t transport.Transport, opts EndpointOptions) *Endpoint {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	e := &Endpoint{
		t:             t,
		log:           log,
		ssrc:          binary.BigEndian.Uint32(b[:]),
		done:          make(chan struct{}),
		onTimeout:     opts.OnMediaTimeout,
		noIdleSilence: opts.NoIdleSilence,
		pacer:         opts.Pacer,
		mediaTimeout:  opts.MediaTimeout,
	}
	e.rtcp.init(opts.RTCPInterval, e.ssrc)
	e.idleOK = (e.rtcp.interval < 0 || e.rtcp.interval >= minIdleInterval) &&
		(e.mediaTimeout <= 0 || e.onTimeout == nil || e.mediaTimeout >= minIdleInterval)
	return e
}

// LocalAddr is the address the endpoint's transport receives on (zero
// for a packet transport).
func (e *Endpoint) LocalAddr() netip.AddrPort { return e.t.LocalAddr() }

// Configure sets the negotiated stream parameters. It may be called again
// (re-INVITE); a changed remote address un-latches symmetric RTP, and
// changed SRTP keys (StreamConfig.SRTP) replace the SRTP context.
func (e *Endpoint) Configure(cfg StreamConfig) {
	if cfg.Direction == "" {
		cfg.Direction = "sendrecv"
	}
	e.t.SetPeer(cfg.peer())
	e.cfg.Store(&cfg)
	e.wake()
}

// Verify records that the peer has proven it wants this endpoint's RTP
// (the ACK of a 2xx we sent arrived, or the peer answered our INVITE), so
// an endpoint with an UnverifiedBudget sends without limit from now on. A
// packet from the configured remote address verifies too.
func (e *Endpoint) Verify() { e.t.Verify() }

// Verified reports whether the peer has proven it wants our RTP (always
// true without an UnverifiedBudget).
func (e *Endpoint) Verified() bool { return e.t.Verified() }

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
	e.t.Start((*streamReceiver)(e))
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
	e.wake()
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
	e.wake()
}

// SetTaps sets the observers of decoded inbound audio (a recorder, voice
// activity detection): they get every frame the SetSink sink gets, after
// it, whatever the topology. nil removes them. Same rules as SetSink.
func (e *Endpoint) SetTaps(s Sink) {
	e.mu.Lock()
	e.tapSink = s
	e.storeSinks()
	e.mu.Unlock()
	e.wake()
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
	e.wake() // in-band detection may now have to run
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
	e.wake()
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
	if c := e.cfg.Load(); c == nil || c.DTMFPayloadType == 0 {
		e.mu.Unlock()
		return errors.New("media: peer did not negotiate telephone-event")
	}
	e.dtmfQ = append(e.dtmfQ, dtmfRequest{digit, duration})
	e.mu.Unlock()
	e.wake()
	return nil
}

// Stats returns the endpoint's counters.
func (e *Endpoint) Stats() EndpointStats {
	ts := e.t.Stats()
	st := EndpointStats{
		PacketsIn: e.packetsIn.Load(), PacketsOut: e.packetsOut.Load(),
		BytesIn: e.bytesIn.Load(), BytesOut: e.bytesOut.Load(),
		Dropped:          e.dropped.Load() + ts.Dropped,
		LastRecv:         time.Unix(0, e.lastRecv.Load()),
		SRTPAuthFailures: ts.SRTPAuthFailures,
		Unsent:           ts.Unsent,
	}
	st.Expected, st.Lost, st.Jitter = e.rstats.snapshot()
	e.rtcpStats(&st)
	st.RTCPDropped += ts.RTCPDropped
	return st
}

// Close stops the stream, finishes any playback with ErrClosed and closes
// its transport (a UDP transport closes its sockets and returns its ports
// to the pool). It is safe to call twice.
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
	if started && (e.packetsOut.Load() > 0 || e.rtcp.out.Load() > 0) {
		// RTCP BYE. A participant that never sent RTP or RTCP sends
		// none (RFC 3550 6.3.7): a call that carried no media costs
		// no datagram here.
		e.sendRTCP(time.Now(), e.cfg.Load(), true)
	}
	close(e.done)
	err := e.t.Close()
	e.wg.Wait()
	if p != nil && p.done != nil {
		p.done(ErrClosed)
	}
	return err
}

// rxLoopState is the reader's own state between packets. Exactly one
// goroutine at a time hands an endpoint its packets (its transport's
// reader, or a packet transport's owner), so it needs no lock.
type rxLoopState struct {
	hdr         rtp.Header
	lastEventTS uint32
	haveEvent   bool
}

// streamReceiver is the endpoint as its transport's Receiver.
type streamReceiver Endpoint

func (r *streamReceiver) ReceiveRTP(pkt []byte) bool  { return (*Endpoint)(r).receiveRTP(pkt) }
func (r *streamReceiver) ReceiveRTCP(pkt []byte) bool { return (*Endpoint)(r).receiveRTCP(pkt) }

// receiveRTP processes one RTP packet the transport accepted from the
// peer (pkt may be rewritten in place and is not kept): statistics,
// forwarding, RFC 4733 and the jitter buffer. It reports whether the
// packet was well-formed RTP (which lets the transport latch its source).
func (e *Endpoint) receiveRTP(pkt []byte) bool {
	st := &e.rxs
	n := len(pkt)
	hdr := &st.hdr
	hl, err := hdr.Unmarshal(pkt)
	if err != nil || hdr.Version != 2 {
		e.dropped.Add(1)
		return false
	}
	payload := pkt[hl:n]
	if hdr.Padding && len(payload) > 0 {
		pad := int(payload[len(payload)-1])
		if pad > len(payload) {
			e.dropped.Add(1)
			return true
		}
		payload = payload[:len(payload)-pad]
	}
	e.packetsIn.Add(1)
	e.bytesIn.Add(uint64(n))
	now := time.Now()
	e.lastRecv.Store(now.UnixNano())

	cfg := e.cfg.Load()
	if cfg == nil {
		return true
	}
	e.rstats.update(hdr.SSRC, hdr.SequenceNumber, hdr.Timestamp, now, cfg.Codec.ClockRate)
	isDTMF := cfg.DTMFPayloadType != 0 && hdr.PayloadType == cfg.DTMFPayloadType
	if !isDTMF && e.muted.Load() {
		return true
	}
	if dst := e.forward.Load(); dst != nil && (isDTMF || hdr.PayloadType == cfg.PayloadType) {
		dst.forwardPacket(hdr, pkt[:hl+len(payload)], hl, isDTMF)
	}
	switch {
	case isDTMF:
		ev, err := ParseTelephoneEvent(payload)
		if err != nil {
			e.dropped.Add(1)
			return true
		}
		if st.haveEvent && hdr.Timestamp == st.lastEventTS {
			return true // update or end packet of an event already reported
		}
		st.haveEvent, st.lastEventTS = true, hdr.Timestamp
		d := DTMFDigit(ev.Event)
		if d == 0 {
			return true
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
	return true
}

// closeCodec frees what a codec holds outside the Go heap (libopus state)
// as soon as its user is done with it, rather than when it is collected.
func closeCodec(c codec.Codec) {
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
	enc     codec.Codec
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
	// The packet buffer comes with the first packet generated
	// (sender.packetBuf): an endpoint that only forwards or reflects
	// (passthrough, Echo) never needs one.
	e.snd = sender{hdr: rtp.Header{Version: 2, SSRC: e.ssrc}, marker: true}
}

// packetBuf returns the sender's packet buffer, made on first use.
func (s *sender) packetBuf() []byte {
	if s.buf == nil {
		s.buf = make([]byte, 1500)
	}
	return s.buf
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
// a bridge feeds the endpoint). It reports quiet when it had nothing to
// do and nothing is queued: no playback, no digit, no partial packet,
// and nothing to generate.
func (e *Endpoint) sendTick(now time.Time) (quiet bool) {
	if e.isClosed.Load() {
		return false
	}
	s := &e.snd
	cfgp := e.cfg.Load()
	if cfgp == nil {
		return false
	}
	cfg := cfgp // read only
	e.rtcpTick(cfgp, now)
	e.mu.Lock()
	p := e.play
	if s.dtmf == nil && len(e.dtmfQ) > 0 {
		r := e.dtmfQ[0]
		e.dtmfQ = e.dtmfQ[1:]
		code, _ := DTMFCode(r.digit)
		step := uint16(cfg.Codec.TimestampStep())
		s.dtmf = &dtmfSender{code: code, step: step, ts: e.out.clockAt(now),
			total: uint16(min(int64(r.duration)*int64(cfg.Codec.ClockRate)/int64(time.Second), 0xffff))}
	}
	digitsQueued := len(e.dtmfQ) > 0
	e.mu.Unlock()

	e.checkMediaTimeout(cfg, now)
	if cfg.Codec.New == nil {
		return false
	}
	if s.enc != nil && s.encName != cfg.Codec.Name {
		// The encoder of a closed endpoint is left to the garbage
		// collector (a Pacer tick may still be using it).
		closeCodec(s.enc)
		s.enc = nil
		s.pending, s.pendingFrames = nil, 0
	}
	send := cfg.Direction == "sendrecv" || cfg.Direction == "sendonly"
	// The encoder, frame and silence come when the endpoint first has
	// audio to generate (a Source, or silence while nothing feeds it): a
	// reflecting or bridged leg never makes them.
	fed := e.fedBy.Load() > 0 // read once: the encoder and idle below must agree
	if s.enc == nil && (p != nil || (send && !fed && !e.noIdleSilence)) {
		s.enc, s.encName = cfg.Codec.New(), cfg.Codec.Name
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
	hdr := &s.hdr
	// Bridged (forwarded packets go out from the peer's reader), on hold,
	// or told to stay quiet: nothing to generate this tick.
	idle := !haveAudio && (fed || !send || e.noIdleSilence)
	if s.pendingFrames > 0 && (s.dtmf != nil || !send || idle) {
		// A digit, hold or a bridge interrupts a multi-frame packet:
		// send what it has.
		e.flushPending(send)
	}
	if s.dtmf != nil {
		ev, first, last := s.dtmf.next()
		hdr.PayloadType = cfg.DTMFPayloadType
		hdr.Marker = first
		hdr.Timestamp = s.dtmf.ts
		hdr.SequenceNumber, _ = e.out.tick(step, true)
		buf := s.packetBuf()
		n, _ := hdr.MarshalTo(buf)
		out := ev.AppendTo(buf[:n])
		if send {
			e.write(out)
		}
		if last {
			s.dtmf = nil
			s.marker = true
		}
		return false
	}
	if idle {
		// Keep the clock running and mark the next talkspurt.
		e.out.tick(step, false)
		s.marker = true
		return p == nil && !digitsQueued
	}
	var out []byte
	if s.pendingFrames == 0 {
		hdr.PayloadType = cfg.PayloadType
		hdr.Marker = s.marker
		hdr.SequenceNumber, hdr.Timestamp = e.out.tick(step, true)
		s.marker = false
		buf := s.packetBuf()
		n, _ := hdr.MarshalTo(buf)
		out = buf[:n]
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
		return false
	}
	s.pending, s.pendingFrames = nil, 0
	if send {
		e.write(out)
	}
	return false
}

// checkMediaTimeout calls OnMediaTimeout (once) when nothing was received
// for the media timeout while the stream is meant to receive.
func (e *Endpoint) checkMediaTimeout(cfg *StreamConfig, now time.Time) {
	s := &e.snd
	if !s.timeout && e.mediaTimeout > 0 && e.onTimeout != nil && cfg.Direction != "sendonly" && cfg.Direction != "inactive" {
		if now.Sub(time.Unix(0, e.lastRecv.Load())) > e.mediaTimeout {
			s.timeout = true
			go e.onTimeout()
		}
	}
}

// idleNow reports whether a tick of the endpoint would do nothing but
// keep the clock, check the media timeout and send RTCP: nothing plays,
// no digit is queued or being sent, no multi-frame packet is half full,
// no received audio waits to be decoded for a consumer (sink, taps,
// in-band DTMF detection; the next packet wakes the endpoint), and
// there is nothing to generate (a bridge feeds it, it does not send, or
// NoIdleSilence). Only the tick's goroutine calls it.
func (e *Endpoint) idleNow() bool {
	cfg := e.cfg.Load()
	if cfg == nil || cfg.Codec.New == nil || e.isClosed.Load() {
		return false
	}
	if sink, inband := e.rxConsumers(cfg); sink != nil || inband {
		// Decoded audio has a consumer, but there is nothing to decode
		// until a packet comes (pushAudio wakes the endpoint then).
		if jb := e.rx.jb.Load(); jb != nil && jb.Buffered() {
			return false
		}
	}
	if s := &e.snd; s.dtmf != nil || s.pendingFrames > 0 {
		return false
	}
	send := cfg.Direction == "sendrecv" || cfg.Direction == "sendonly"
	if send && e.fedBy.Load() <= 0 && !e.noIdleSilence {
		return false
	}
	e.mu.Lock()
	busy := e.play != nil || len(e.dtmfQ) > 0
	e.mu.Unlock()
	return !busy
}

// goIdle takes a paced endpoint whose ticks found nothing to do off the
// 20 ms pass, if it is still idle: it publishes paceSlow first and checks
// after, so a change made meanwhile is either seen here or wakes it
// (wake). The RTP clock stops and is caught up when needed
// (outState.catchUp). Shard goroutine only.
func (e *Endpoint) goIdle() bool {
	if !e.pace.state.CompareAndSwap(paceFast, paceSlow) {
		return false
	}
	if h := e.pace.sh.testHookDemote; h != nil {
		h(e)
	}
	if !e.idleNow() {
		e.pace.state.CompareAndSwap(paceSlow, paceFast)
		return false
	}
	if jb := e.rx.jb.Load(); jb != nil {
		// Only if still empty: a packet pushed since idleNow looked
		// (its wake is queued) must not be thrown away here.
		jb.resetIfDrained()
	}
	e.out.pause(time.Now(), e.cfg.Load().Codec.TimestampStep())
	return true
}

// idleTick is the slow list's visit of an idle endpoint: its media
// timeout and RTCP report. It reports false when the endpoint is no
// longer idle (a change that did not wake it), so the shard promotes it.
func (e *Endpoint) idleTick(now time.Time) (stillIdle bool) {
	cfg := e.cfg.Load()
	if e.isClosed.Load() || cfg == nil {
		return true // the shard drops it on its detach
	}
	e.rtcpTick(cfg, now)
	e.checkMediaTimeout(cfg, now)
	return e.idleNow()
}

// flushPending sends a partly filled multi-frame packet.
func (e *Endpoint) flushPending(send bool) {
	s := &e.snd
	if send {
		e.write(s.pending)
	}
	s.pending, s.pendingFrames = nil, 0
}

// write hands an RTP packet to the transport (which protects it when the
// stream is SRTP, and may withhold it: see transport.UDPOptions). Only
// packets the transport sent are counted; BytesOut counts the RTP size
// (what RTCP sender reports describe).
func (e *Endpoint) write(pkt []byte) {
	if e.t.WriteRTP(pkt) != nil {
		return
	}
	e.packetsOut.Add(1)
	e.bytesOut.Add(uint64(len(pkt)))
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

// clockAt returns the RTP clock at now (caught up if the endpoint idles).
func (o *outState) clockAt(now time.Time) uint32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.idle {
		o.catchUp(now)
	}
	return o.clockTS
}

// pause records that ticks stop advancing the clock from now (the
// endpoint goes idle); step is what each 20 ms would have added.
func (o *outState) pause(now time.Time, step uint32) {
	o.mu.Lock()
	o.idle, o.idleAt, o.idleTS, o.idleStep = true, now, o.clockTS, step
	o.mu.Unlock()
}

// resume catches the clock up with the time spent idle and hands it back
// to the ticks.
func (o *outState) resume(now time.Time) {
	o.mu.Lock()
	if o.idle {
		o.catchUp(now)
		o.idle = false
	}
	o.mu.Unlock()
}

// catchUp sets clockTS to where 20 ms ticks since idleAt would have
// taken it. It always counts from idleAt, so calling it again later
// neither loses nor adds time. Caller holds o.mu and checked o.idle.
func (o *outState) catchUp(now time.Time) {
	d := now.Sub(o.idleAt)
	if d < 0 {
		d = 0
	}
	o.clockTS = o.idleTS + uint32(d/(FrameDurationMs*time.Millisecond))*o.idleStep
}

// ForwardTo makes e pass every inbound audio and telephone-event packet to
// dst unchanged but for its header: dst's SSRC, payload type, and sequence
// number and timestamp continuing dst's own. Nothing is decoded and nothing
// is allocated. nil stops forwarding. Decoding to the sink and DTMF
// reporting go on as before.
func (e *Endpoint) ForwardTo(dst *Endpoint) {
	if old := e.forward.Swap(dst); old != nil {
		old.fedBy.Add(-1)
		old.wake() // fed by nobody, it may have to send silence again
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
	if cfg == nil || (cfg.Direction != "sendrecv" && cfg.Direction != "sendonly") {
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
		if o.idle {
			// The clock stood still while e idled: a run's offsets
			// start from real time (one clock read per run, not per packet).
			o.catchUp(time.Now())
		}
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
	e.write(out)
}
