package transport

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// SRTPSuite is an SRTP crypto suite as named by SDES (RFC 4568, RFC 7714).
type SRTPSuite uint8

// The suites a stream can be protected with.
const (
	SRTPNone SRTPSuite = iota
	// SRTPAESCM128SHA1_80 is AES_CM_128_HMAC_SHA1_80 (RFC 4568): AES-128
	// counter mode and an 80-bit HMAC-SHA1 tag; 16-byte key, 14-byte salt.
	SRTPAESCM128SHA1_80
	// SRTPAEADAES128GCM is AEAD_AES_128_GCM (RFC 7714): AES-128-GCM with a
	// 16-byte tag; 16-byte key, 12-byte salt.
	SRTPAEADAES128GCM
)

// String returns the suite's SDES name.
func (s SRTPSuite) String() string {
	switch s {
	case SRTPNone:
		return "none"
	case SRTPAESCM128SHA1_80:
		return "AES_CM_128_HMAC_SHA1_80"
	case SRTPAEADAES128GCM:
		return "AEAD_AES_128_GCM"
	}
	return fmt.Sprintf("SRTPSuite(%d)", uint8(s))
}

// ParseSRTPSuite maps an SDES suite name to a supported suite.
func ParseSRTPSuite(name string) (SRTPSuite, bool) {
	switch name {
	case "AES_CM_128_HMAC_SHA1_80":
		return SRTPAESCM128SHA1_80, true
	case "AEAD_AES_128_GCM":
		return SRTPAEADAES128GCM, true
	}
	return SRTPNone, false
}

// KeyLen is the length of the suite's master key and master salt
// together (the SDES inline key), 0 for an unknown suite.
func (s SRTPSuite) KeyLen() int {
	switch s {
	case SRTPAESCM128SHA1_80:
		return 16 + 14
	case SRTPAEADAES128GCM:
		return 16 + 12
	}
	return 0
}

func (s SRTPSuite) profile() (srtp.ProtectionProfile, bool) {
	switch s {
	case SRTPAESCM128SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, true
	case SRTPAEADAES128GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, true
	}
	return 0, false
}

// SRTPKeys are the SDES keys of one SRTP stream: Local protects what we
// send, Remote what the peer sends; each is master key || master salt of
// Suite.KeyLen bytes. Printing or logging SRTPKeys never shows the keys.
type SRTPKeys struct {
	Suite         SRTPSuite
	Local, Remote []byte
}

// Equal reports whether k and o hold the same suite and keys.
func (k *SRTPKeys) Equal(o *SRTPKeys) bool {
	if k == nil || o == nil {
		return k == o
	}
	return k.Suite == o.Suite && bytes.Equal(k.Local, o.Local) && bytes.Equal(k.Remote, o.Remote)
}

// Validate checks that the suite is supported and the keys have its
// length.
func (k *SRTPKeys) Validate() error {
	n := k.Suite.KeyLen()
	if n == 0 {
		return fmt.Errorf("transport: unsupported SRTP suite %s", k.Suite)
	}
	if len(k.Local) != n || len(k.Remote) != n {
		return fmt.Errorf("transport: SRTP %s keys must be %d bytes", k.Suite, n)
	}
	return nil
}

// String describes the keys without revealing them.
func (k SRTPKeys) String() string { return "SRTP " + k.Suite.String() + " (keys redacted)" }

// GoString keeps %#v from printing the keys.
func (k SRTPKeys) GoString() string { return k.String() }

// LogValue keeps slog from printing the keys.
func (k SRTPKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ErrSRTPAuth reports an SRTP or SRTCP packet that failed authentication
// (wrong key, tampering, or a replay).
var ErrSRTPAuth = errors.New("transport: SRTP authentication failed")

// srtpMaxOverhead is the most SRTP or SRTCP adds to a packet: a 16-byte
// GCM tag (or a 10-byte HMAC tag) plus the 4-byte SRTCP index.
const srtpMaxOverhead = 16 + 4

// SRTPContext protects one stream: it encrypts and authenticates
// outgoing RTP and RTCP with the local key and checks and decrypts
// incoming ones with the remote key (replays refused). The SRTP transport
// calls it at two points only: after a datagram arrives and before one
// leaves.
//
// Cost on the media path: one AES pass and one HMAC (or one GCM pass) per
// packet, a mutex per direction, no allocation: outgoing packets are
// written into buffers the context owns, incoming ones decrypted in place.
type SRTPContext struct {
	suite SRTPSuite

	txMu   sync.Mutex // guards tx, txBuf, txHdr: the sender tick and a bridged peer's reader both send
	tx     *srtp.Context
	txBuf  []byte
	txHdr  rtp.Header
	rtcpTx []byte
	txRTCP rtcp.Header

	rxMu   sync.Mutex // guards rx, rxHdr, rxRTCP: the RTP and RTCP readers may be two goroutines
	rx     *srtp.Context
	rxHdr  rtp.Header
	rxRTCP rtcp.Header
}

// NewSRTPContext builds the contexts for keys.
func NewSRTPContext(keys SRTPKeys) (*SRTPContext, error) {
	if err := keys.Validate(); err != nil {
		return nil, err
	}
	prof, _ := keys.Suite.profile()
	kl, _ := prof.KeyLen()
	tx, err := srtp.CreateContext(keys.Local[:kl], keys.Local[kl:], prof)
	if err != nil {
		return nil, fmt.Errorf("transport: SRTP %s local context: %w", keys.Suite, err)
	}
	rx, err := srtp.CreateContext(keys.Remote[:kl], keys.Remote[kl:], prof,
		srtp.SRTPReplayProtection(128), srtp.SRTCPReplayProtection(128))
	if err != nil {
		return nil, fmt.Errorf("transport: SRTP %s remote context: %w", keys.Suite, err)
	}
	return &SRTPContext{suite: keys.Suite, tx: tx, rx: rx,
		txBuf: make([]byte, 0, 1500+srtpMaxOverhead), rtcpTx: make([]byte, 0, 1500+srtpMaxOverhead)}, nil
}

// Suite returns the context's crypto suite.
func (c *SRTPContext) Suite() SRTPSuite { return c.suite }

// ProtectRTP encrypts an RTP packet and hands the SRTP packet to send
// while the context's send lock is held (the buffer is reused at once,
// so send must not keep it).
func (c *SRTPContext) ProtectRTP(pkt []byte, send func([]byte)) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.tx == nil {
		return errSRTPUnkeyed
	}
	out, err := c.tx.EncryptRTP(c.txBuf[:0], pkt, &c.txHdr)
	if err != nil {
		return err
	}
	send(out)
	return nil
}

// ProtectRTCP is ProtectRTP for a compound RTCP packet.
func (c *SRTPContext) ProtectRTCP(pkt []byte, send func([]byte)) error {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	if c.tx == nil {
		return errSRTPUnkeyed
	}
	out, err := c.tx.EncryptRTCP(c.rtcpTx[:0], pkt, &c.txRTCP)
	if err != nil {
		return err
	}
	send(out)
	return nil
}

// UnprotectRTP authenticates and decrypts an SRTP packet in place and
// returns the RTP packet (a prefix of pkt).
func (c *SRTPContext) UnprotectRTP(pkt []byte) ([]byte, error) {
	c.rxMu.Lock()
	defer c.rxMu.Unlock()
	if c.rx == nil {
		return nil, errSRTPUnkeyed
	}
	out, err := c.rx.DecryptRTP(pkt, pkt, &c.rxHdr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSRTPAuth, err)
	}
	return out, nil
}

// UnprotectRTCP authenticates and decrypts an SRTCP packet in place.
func (c *SRTPContext) UnprotectRTCP(pkt []byte) ([]byte, error) {
	c.rxMu.Lock()
	defer c.rxMu.Unlock()
	if c.rx == nil {
		return nil, errSRTPUnkeyed
	}
	out, err := c.rx.DecryptRTCP(pkt, pkt, &c.rxRTCP)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSRTPAuth, err)
	}
	return out, nil
}

// errSRTPUnkeyed is what a context whose keys were refused returns: the
// stream stays protected, nothing is sent or accepted in the clear.
var errSRTPUnkeyed = errors.New("transport: SRTP context without usable keys")

// SRTP is a Transport that protects what another one carries (RFC 3711,
// keys from SDES): what the stream writes is encrypted and authenticated
// before the inner transport sends it, and what the inner transport reads
// is authenticated and decrypted in place before the stream sees it; a
// packet that fails is dropped, counted, and logged at most once per
// srtpLogEvery (so it never latches the inner transport). Keys come with
// SetPeer (Peer.SRTP) and may change on a re-INVITE; nil keys mean plain
// RTP through the same wrapper (one atomic load per packet).
type SRTP struct {
	inner Transport
	log   *slog.Logger
	ctx   atomic.Pointer[SRTPContext]
	recv  Receiver

	keyMu sync.Mutex // serialises SetPeer's rekeying
	keyed bool       // SetPeer has run once
	keys  *SRTPKeys

	remote               atomic.Pointer[netip.AddrPort] // the configured peer, for log lines
	fails                atomic.Uint64
	dropped, rtcpDropped atomic.Uint64
	logged               atomic.Int64 // when a failure was last logged (rate limit)
}

// NewSRTP wraps inner; until SetPeer brings keys it passes packets
// through unchanged.
func NewSRTP(inner Transport, log *slog.Logger) *SRTP {
	if log == nil {
		log = slog.Default()
	}
	return &SRTP{inner: inner, log: log}
}

// Inner returns the wrapped transport.
func (s *SRTP) Inner() Transport { return s.inner }

// LocalAddr is the inner transport's address.
func (s *SRTP) LocalAddr() netip.AddrPort { return s.inner.LocalAddr() }

// SetPeer installs new keys when they changed (or with nil removes
// protection) and hands p to the inner transport. Keys that cannot make a
// context leave an unkeyed one: the stream then drops everything rather
// than falling back to plain RTP.
func (s *SRTP) SetPeer(p Peer) {
	s.keyMu.Lock()
	if !s.keyed || !p.SRTP.Equal(s.keys) {
		s.keyed, s.keys = true, p.SRTP
		s.ctx.Store(s.newContext(p.SRTP))
	}
	s.keyMu.Unlock()
	r := p.Remote
	s.remote.Store(&r)
	s.inner.SetPeer(p)
}

func (s *SRTP) newContext(keys *SRTPKeys) *SRTPContext {
	if keys == nil {
		return nil
	}
	sc, err := NewSRTPContext(*keys)
	if err != nil {
		s.log.Error("transport: SRTP keys refused; the stream stays silent", "suite", keys.Suite.String(), "error", err)
		sc = &SRTPContext{suite: keys.Suite}
	}
	return sc
}

// Suite returns the suite protecting the stream now (SRTPNone if none).
func (s *SRTP) Suite() SRTPSuite {
	if sc := s.ctx.Load(); sc != nil {
		return sc.suite
	}
	return SRTPNone
}

// Start starts the inner transport, which hands what it reads to s.
func (s *SRTP) Start(r Receiver) {
	s.recv = r
	s.inner.Start((*srtpReceiver)(s))
}

// WriteRTP protects pkt (when keyed) and sends it through the inner
// transport.
func (s *SRTP) WriteRTP(pkt []byte) error {
	sc := s.ctx.Load()
	if sc == nil {
		return s.inner.WriteRTP(pkt)
	}
	var werr error
	if err := sc.ProtectRTP(pkt, func(out []byte) { werr = s.inner.WriteRTP(out) }); err != nil {
		s.failed(err)
		return err
	}
	return werr
}

// WriteRTCP is WriteRTP for a compound RTCP packet (SRTCP).
func (s *SRTP) WriteRTCP(pkt []byte) error {
	sc := s.ctx.Load()
	if sc == nil {
		return s.inner.WriteRTCP(pkt)
	}
	var werr error
	if err := sc.ProtectRTCP(pkt, func(out []byte) { werr = s.inner.WriteRTCP(out) }); err != nil {
		s.failed(err)
		return err
	}
	return werr
}

// Verify verifies the inner transport.
func (s *SRTP) Verify() { s.inner.Verify() }

// Verified reports the inner transport's verification.
func (s *SRTP) Verified() bool { return s.inner.Verified() }

// Stats adds the packets that failed SRTP to the inner transport's.
func (s *SRTP) Stats() Stats {
	return s.inner.Stats().Add(Stats{Dropped: s.dropped.Load(), RTCPDropped: s.rtcpDropped.Load(), SRTPAuthFailures: s.fails.Load()})
}

// Close closes the inner transport.
func (s *SRTP) Close() error { return s.inner.Close() }

// srtpReceiver is the Receiver the inner transport calls: SRTP's view of
// inbound packets.
type srtpReceiver SRTP

func (r *srtpReceiver) ReceiveRTP(pkt []byte) bool {
	s := (*SRTP)(r)
	if sc := s.ctx.Load(); sc != nil {
		var err error
		if pkt, err = sc.UnprotectRTP(pkt); err != nil {
			s.dropped.Add(1)
			s.failed(err)
			return false
		}
	}
	return s.recv.ReceiveRTP(pkt)
}

func (r *srtpReceiver) ReceiveRTCP(pkt []byte) bool {
	s := (*SRTP)(r)
	if sc := s.ctx.Load(); sc != nil {
		var err error
		if pkt, err = sc.UnprotectRTCP(pkt); err != nil {
			s.rtcpDropped.Add(1)
			s.failed(err)
			return false
		}
	}
	return s.recv.ReceiveRTCP(pkt)
}

// srtpLogEvery is the least time between two log lines about SRTP
// failures of one stream.
const srtpLogEvery = 10 * time.Second

// failed counts a packet that failed SRTP protection or authentication
// and logs it at most once per srtpLogEvery.
func (s *SRTP) failed(err error) {
	n := s.fails.Add(1)
	now := time.Now().UnixNano()
	last := s.logged.Load()
	if now-last < int64(srtpLogEvery) || !s.logged.CompareAndSwap(last, now) {
		return
	}
	var peer string
	if r := s.remote.Load(); r != nil {
		peer = r.String()
	}
	// Info, not Warn: some peers send a plain packet or two before their
	// keys are in place (baresip's libre sends an RTCP APP "PINGPONG"
	// NAT pinhole in the clear at call start).
	s.log.Info("transport: SRTP packet dropped", "peer", peer, "failures", n, "error", err)
}
