package media

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// SRTPSuite is an SRTP crypto suite as named by SDES (RFC 4568, RFC 7714).
type SRTPSuite uint8

// The suites an endpoint can protect its stream with.
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
		return fmt.Errorf("media: unsupported SRTP suite %s", k.Suite)
	}
	if len(k.Local) != n || len(k.Remote) != n {
		return fmt.Errorf("media: SRTP %s keys must be %d bytes", k.Suite, n)
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
var ErrSRTPAuth = errors.New("media: SRTP authentication failed")

// srtpMaxOverhead is the most SRTP or SRTCP adds to a packet: a 16-byte
// GCM tag (or a 10-byte HMAC tag) plus the 4-byte SRTCP index.
const srtpMaxOverhead = 16 + 4

// SRTPContext protects one endpoint's stream: it encrypts and
// authenticates outgoing RTP and RTCP with the local key and checks and
// decrypts incoming ones with the remote key (replays refused). The
// endpoint calls it at two points only: after a datagram arrives and
// before one leaves.
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
		return nil, fmt.Errorf("media: SRTP %s local context: %w", keys.Suite, err)
	}
	rx, err := srtp.CreateContext(keys.Remote[:kl], keys.Remote[kl:], prof,
		srtp.SRTPReplayProtection(128), srtp.SRTCPReplayProtection(128))
	if err != nil {
		return nil, fmt.Errorf("media: SRTP %s remote context: %w", keys.Suite, err)
	}
	return &SRTPContext{suite: keys.Suite, tx: tx, rx: rx,
		txBuf: make([]byte, 0, 1500+srtpMaxOverhead), rtcpTx: make([]byte, 0, 1500+srtpMaxOverhead)}, nil
}

// Suite returns the context's crypto suite.
func (c *SRTPContext) Suite() SRTPSuite { return c.suite }

// protectRTP encrypts an RTP packet and hands the SRTP packet to send
// while the context's send lock is held (the buffer is reused at once).
func (c *SRTPContext) protectRTP(pkt []byte, send func([]byte)) error {
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

// protectRTCP is protectRTP for a compound RTCP packet.
func (c *SRTPContext) protectRTCP(pkt []byte, send func([]byte)) error {
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

// unprotectRTP authenticates and decrypts an SRTP packet in place and
// returns the RTP packet (a prefix of pkt).
func (c *SRTPContext) unprotectRTP(pkt []byte) ([]byte, error) {
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

// unprotectRTCP authenticates and decrypts an SRTCP packet in place.
func (c *SRTPContext) unprotectRTCP(pkt []byte) ([]byte, error) {
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
var errSRTPUnkeyed = errors.New("media: SRTP context without usable keys")

// setSRTP installs (or with nil removes) the stream's SRTP context. Keys
// that cannot make a context leave an unkeyed one: the endpoint then
// drops everything rather than falling back to plain RTP.
func (e *Endpoint) setSRTP(keys *SRTPKeys) {
	if keys == nil {
		e.srtp.Store(nil)
		return
	}
	sc, err := NewSRTPContext(*keys)
	if err != nil {
		e.log.Error("media: SRTP keys refused; the stream stays silent", "suite", keys.Suite.String(), "error", err)
		sc = &SRTPContext{suite: keys.Suite}
	}
	e.srtp.Store(sc)
}

// srtpLogEvery is the least time between two log lines about SRTP
// failures of one endpoint.
const srtpLogEvery = 10 * time.Second

// srtpFailed counts a packet that failed SRTP protection or
// authentication and logs it at most once per srtpLogEvery.
func (e *Endpoint) srtpFailed(err error, peer netip.AddrPort) {
	n := e.srtpFails.Add(1)
	now := time.Now().UnixNano()
	last := e.srtpLogged.Load()
	if now-last < int64(srtpLogEvery) || !e.srtpLogged.CompareAndSwap(last, now) {
		return
	}
	// Info, not Warn: some peers send a plain packet or two before their
	// keys are in place (baresip's libre sends an RTCP APP "PINGPONG"
	// NAT pinhole in the clear at call start).
	e.log.Info("media: SRTP packet dropped", "peer", peer.String(), "failures", n, "error", err)
}
