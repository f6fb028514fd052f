package sip

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// SRTPPolicy says whether a user's or a trunk's calls use SRTP (SDES keys
// in SDP, RFC 4568).
type SRTPPolicy uint8

// SRTP policies. The zero value is SRTPOff.
const (
	// SRTPOff: calls we place offer plain RTP/AVP; offers of either
	// RTP/AVP or RTP/SAVP are answered in kind.
	SRTPOff SRTPPolicy = iota
	// SRTPOptional: calls we place offer RTP/SAVP and are placed again
	// with RTP/AVP if the peer refuses it (488/606); offers of either kind
	// are answered in kind.
	SRTPOptional
	// SRTPRequired: calls we place offer RTP/SAVP only; a plain RTP/AVP
	// offer (initial or mid-dialog) is refused with 488.
	SRTPRequired
)

// String returns the policy as written in the TOML config ("" for off).
func (p SRTPPolicy) String() string {
	switch p {
	case SRTPOff:
		return ""
	case SRTPOptional:
		return "optional"
	case SRTPRequired:
		return "required"
	}
	return fmt.Sprintf("SRTPPolicy(%d)", uint8(p))
}

// UnmarshalText reads "", "off", "optional" or "required".
func (p *SRTPPolicy) UnmarshalText(b []byte) error {
	switch strings.ToLower(strings.TrimSpace(string(b))) {
	case "", "off", "none":
		*p = SRTPOff
	case "optional":
		*p = SRTPOptional
	case "required", "mandatory":
		*p = SRTPRequired
	default:
		return fmt.Errorf("sip: srtp %q: want \"\", \"optional\" or \"required\"", b)
	}
	return nil
}

// MarshalText writes the policy as UnmarshalText reads it.
func (p SRTPPolicy) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// ErrSRTPRequired refuses a plain RTP offer to a user or trunk that
// requires SRTP; an INVITE carrying one is answered 488.
var ErrSRTPRequired = errors.New("sip: SRTP required")

// ErrUnsupportedCrypto marks an a=crypto line we cannot use: an unknown
// suite, an MKI, several keys, a key lifetime we cannot honour or session
// parameters. Another line of the same offer may still be usable.
var ErrUnsupportedCrypto = errors.New("sdp: unsupported crypto attribute")

// CryptoAttr is one SDES a=crypto line (RFC 4568): tag, suite and the
// inline master key || master salt. Printing it never shows the key.
type CryptoAttr struct {
	Tag   int
	Suite transport.SRTPSuite
	Key   []byte
}

// String describes the attribute without its key.
func (c CryptoAttr) String() string {
	return fmt.Sprintf("crypto %d %s inline:(redacted)", c.Tag, c.Suite)
}

// GoString keeps %#v from printing the key.
func (c CryptoAttr) GoString() string { return c.String() }

// value is the attribute's SDP value (what follows "a=crypto:").
func (c CryptoAttr) value() string {
	return fmt.Sprintf("%d %s inline:%s", c.Tag, c.Suite, base64.StdEncoding.EncodeToString(c.Key))
}

// parseCrypto reads the value of an a=crypto attribute:
//
//	tag 1*WSP crypto-suite 1*WSP inline:key||salt[|lifetime][|MKI:length] [session-params]
//
// A malformed line wraps ErrBadSDP; a well-formed one we cannot use
// (unknown suite, MKI, several keys, session parameters, a lifetime below
// 2^31 packets) wraps ErrUnsupportedCrypto.
func parseCrypto(v string) (CryptoAttr, error) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return CryptoAttr{}, fmt.Errorf("%w: crypto attribute needs tag, suite and key", ErrBadSDP)
	}
	if len(f[0]) > 9 {
		return CryptoAttr{}, fmt.Errorf("%w: crypto tag %.12q", ErrBadSDP, f[0])
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 {
		return CryptoAttr{}, fmt.Errorf("%w: crypto tag %.12q", ErrBadSDP, f[0])
	}
	suite, ok := transport.ParseSRTPSuite(f[1])
	if !ok {
		return CryptoAttr{}, fmt.Errorf("%w: suite %.40q", ErrUnsupportedCrypto, f[1])
	}
	if len(f) > 3 {
		return CryptoAttr{}, fmt.Errorf("%w: session parameter %.40q", ErrUnsupportedCrypto, f[3])
	}
	if strings.Contains(f[2], ";") {
		return CryptoAttr{}, fmt.Errorf("%w: more than one key", ErrUnsupportedCrypto)
	}
	method, info, ok := strings.Cut(f[2], ":")
	if !ok || method != "inline" {
		return CryptoAttr{}, fmt.Errorf("%w: crypto key method is not inline", ErrBadSDP)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return CryptoAttr{}, fmt.Errorf("%w: crypto key has %d parts", ErrBadSDP, len(parts))
	}
	key, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		// Some implementations leave out the padding.
		key, err = base64.RawStdEncoding.DecodeString(parts[0])
	}
	if err != nil {
		return CryptoAttr{}, fmt.Errorf("%w: crypto key is not base64", ErrBadSDP)
	}
	if len(key) != suite.KeyLen() {
		return CryptoAttr{}, fmt.Errorf("%w: %s key of %d bytes, want %d", ErrBadSDP, suite, len(key), suite.KeyLen())
	}
	for _, p := range parts[1:] {
		if strings.Contains(p, ":") {
			return CryptoAttr{}, fmt.Errorf("%w: MKI", ErrUnsupportedCrypto)
		}
		if err := checkLifetime(p); err != nil {
			return CryptoAttr{}, err
		}
	}
	return CryptoAttr{Tag: tag, Suite: suite, Key: key}, nil
}

// checkLifetime accepts a key lifetime ("2^31" or a decimal count of
// packets) no shorter than 2^31 packets: we never re-key within a call,
// and a call sends far fewer packets than that.
func checkLifetime(p string) error {
	if exp, ok := strings.CutPrefix(p, "2^"); ok {
		n, err := strconv.Atoi(exp)
		if err != nil || n < 1 || n > 64 {
			return fmt.Errorf("%w: key lifetime %.24q", ErrBadSDP, p)
		}
		if n < 31 {
			return fmt.Errorf("%w: key lifetime 2^%d", ErrUnsupportedCrypto, n)
		}
		return nil
	}
	n, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: key lifetime %.24q", ErrBadSDP, p)
	}
	if n < 1<<31 {
		return fmt.Errorf("%w: key lifetime %d", ErrUnsupportedCrypto, n)
	}
	return nil
}

// newCryptoKey returns a fresh master key || salt for suite from
// crypto/rand.
func newCryptoKey(suite transport.SRTPSuite) []byte {
	k := make([]byte, suite.KeyLen())
	if _, err := rand.Read(k); err != nil {
		panic("sip: crypto/rand failed: " + err.Error()) // the runtime documents this never happens
	}
	return k
}

// defaultSRTPSuites are the suites offered and accepted when
// Config.SRTPSuites is empty: AES-CM first (every SDES peer has it).
var defaultSRTPSuites = []transport.SRTPSuite{transport.SRTPAESCM128SHA1_80, transport.SRTPAEADAES128GCM}

// srtpSuites returns the suites this agent offers and accepts.
func (a *Agent) srtpSuites() []transport.SRTPSuite {
	if len(a.cfg.SRTPSuites) > 0 {
		return a.cfg.SRTPSuites
	}
	return defaultSRTPSuites
}

// pickCrypto returns the offer's first a=crypto line (in the offerer's
// order) whose suite we accept.
func (a *Agent) pickCrypto(o *MediaOffer) (CryptoAttr, bool) {
	for _, c := range o.Crypto {
		if slices.Contains(a.srtpSuites(), c.Suite) {
			return c, true
		}
	}
	return CryptoAttr{}, false
}

// offerCrypto is what we offer on an SRTP call: one line per suite, each
// with its own fresh key.
func offerCrypto(suites []transport.SRTPSuite) []CryptoAttr {
	out := make([]CryptoAttr, len(suites))
	for i, s := range suites {
		out[i] = CryptoAttr{Tag: i + 1, Suite: s, Key: newCryptoKey(s)}
	}
	return out
}

// answerKeys matches an answer's crypto line to the lines we offered and
// returns the stream's keys: an answer must pick one of our tags with its
// suite.
func answerKeys(offered []CryptoAttr, answer []CryptoAttr) (*transport.SRTPKeys, int, error) {
	if len(answer) == 0 {
		return nil, 0, fmt.Errorf("%w: SRTP answer without a usable crypto line", ErrBadSDP)
	}
	a := answer[0]
	for _, o := range offered {
		if o.Tag == a.Tag && o.Suite == a.Suite {
			return &transport.SRTPKeys{Suite: a.Suite, Local: o.Key, Remote: a.Key}, a.Tag, nil
		}
	}
	return nil, 0, fmt.Errorf("%w: crypto answer tag %d (%s) was not offered", ErrBadSDP, a.Tag, a.Suite)
}

// srtpPolicy is the SRTP policy of an inbound call: its trunk's when it
// comes from one, else its authenticated caller's directory account's,
// else Config.SRTP.
func (a *Agent) srtpPolicy(authUser string, src netip.Addr) SRTPPolicy {
	if t, ok := a.trunkFor(src); ok {
		return t.SRTP
	}
	if authUser != "" && a.cfg.Registrar != nil && a.cfg.Registrar.Directory != nil {
		if acct, ok := a.cfg.Registrar.Directory.Lookup(authUser); ok && acct.SRTP != SRTPOff {
			return acct.SRTP
		}
	}
	return a.cfg.SRTP
}

// offerCryptoFor returns the a=crypto lines of an offer from l and
// remembers them to match the answer: the stream's current key and tag
// when it is already SRTP; fresh keys when the policy requires SRTP, or
// prefers it on a first offer of a call we place; none otherwise (an
// inbound late offer under "optional" stays plain: a caller that sent no
// SDP cannot refuse SAVP without failing the call).
func (l *Leg) offerCryptoFor(current *media.StreamConfig) []CryptoAttr {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case current != nil && current.SRTP != nil:
		l.offered = []CryptoAttr{{Tag: l.cryptoTag, Suite: current.SRTP.Suite, Key: current.SRTP.Local}}
	case l.srtp == SRTPRequired || (l.srtp == SRTPOptional && current == nil && !l.inbound):
		l.offered = offerCrypto(l.agent.srtpSuites())
	default:
		l.offered = nil
	}
	return l.offered
}

// answerConfig reads an SDP answer to the offer l made last.
func (l *Leg) answerConfig(body []byte) (media.StreamConfig, error) {
	l.mu.Lock()
	offered, policy := l.offered, l.srtp
	l.mu.Unlock()
	cfg, tag, err := answerConfig(body, offered, policy)
	if err == nil && cfg.SRTP != nil {
		l.mu.Lock()
		l.cryptoTag = tag
		l.mu.Unlock()
	}
	return cfg, err
}

// srtpSuiteName is for log lines: the suite, or "off".
func srtpSuiteName(cfg media.StreamConfig) string {
	if cfg.SRTP == nil {
		return "off"
	}
	return cfg.SRTP.Suite.String()
}

var inlineKey = regexp.MustCompile(`(?i)(inline:)[^\s|;]+`)

// RedactSDP returns body with every SDES inline key and every k= line
// replaced by "(redacted)": use it whenever an SDP body goes into a log.
func RedactSDP(body []byte) []byte {
	out := inlineKey.ReplaceAll(body, []byte("${1}(redacted)"))
	lines := strings.Split(string(out), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "k=") {
			lines[i] = "k=(redacted)"
		}
	}
	return []byte(strings.Join(lines, "\n"))
}
