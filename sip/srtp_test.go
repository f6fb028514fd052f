package sip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// 30 bytes (AES-CM) and 28 bytes (GCM) of key || salt.
var (
	key30 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xa5}, 30))
	key28 = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 28))
)

func TestParseCrypto(t *testing.T) {
	raw30 := strings.TrimRight(key30, "=")
	cases := []struct {
		name  string
		value string
		tag   int
		suite transport.SRTPSuite
		err   error // nil: accepted
	}{
		{"aes-cm", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30, 1, transport.SRTPAESCM128SHA1_80, nil},
		{"gcm", "7 AEAD_AES_128_GCM inline:" + key28, 7, transport.SRTPAEADAES128GCM, nil},
		{"lifetime power", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^31", 1, transport.SRTPAESCM128SHA1_80, nil},
		{"lifetime decimal", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|4294967296", 1, transport.SRTPAESCM128SHA1_80, nil},
		{"unpadded base64", "2 AES_CM_128_HMAC_SHA1_80 inline:" + raw30, 2, transport.SRTPAESCM128SHA1_80, nil},
		{"extra spaces", "3  AES_CM_128_HMAC_SHA1_80\tinline:" + key30, 3, transport.SRTPAESCM128SHA1_80, nil},
		{"mki", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4", 0, 0, ErrUnsupportedCrypto},
		{"mki without lifetime", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|1:4", 0, 0, ErrUnsupportedCrypto},
		{"short lifetime", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20", 0, 0, ErrUnsupportedCrypto},
		{"session param", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + " UNENCRYPTED_SRTP", 0, 0, ErrUnsupportedCrypto},
		{"two keys", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"unknown suite", "1 AES_256_CM_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"sha1_32 not offered by us", "1 AES_CM_128_HMAC_SHA1_32 inline:" + key30, 0, 0, ErrUnsupportedCrypto},
		{"wrong key length", "1 AEAD_AES_128_GCM inline:" + key30, 0, 0, ErrBadSDP},
		{"not base64", "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", 0, 0, ErrBadSDP},
		{"not inline", "1 AES_CM_128_HMAC_SHA1_80 uri:http://x", 0, 0, ErrBadSDP},
		{"no key", "1 AES_CM_128_HMAC_SHA1_80", 0, 0, ErrBadSDP},
		{"bad tag", "x AES_CM_128_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrBadSDP},
		{"huge tag", "1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + key30, 0, 0, ErrBadSDP},
		{"bad lifetime", "1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^x", 0, 0, ErrBadSDP},
		{"empty", "", 0, 0, ErrBadSDP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCrypto(tc.value)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				if strings.Contains(err.Error(), key30[:20]) {
					t.Fatalf("error message carries the key: %v", err)
				}
				return
			}
			if err != nil || c.Tag != tc.tag || c.Suite != tc.suite || len(c.Key) != tc.suite.KeyLen() {
				t.Fatalf("got %v %v, want tag %d %s", c, err, tc.tag, tc.suite)
			}
		})
	}
}

// An RTP/SAVP offer parses with its usable crypto lines in order; an
// SRTP stream with no usable line is no stream at all (488).
func TestParseSDPSAVP(t *testing.T) {
	cases := []struct {
		name   string
		body   []byte
		proto  string
		suites []transport.SRTPSuite
		err    error
	}{
		{"baresip-like SAVP", withHead("m=audio 4000 RTP/SAVP 0 101",
			"a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:"+key30+key30,
			"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:"+key30,
			"a=crypto:3 AEAD_AES_128_GCM inline:"+key28), "RTP/SAVP",
			[]transport.SRTPSuite{transport.SRTPAESCM128SHA1_80, transport.SRTPAEADAES128GCM}, nil},
		{"SAVPF", withHead("m=audio 4000 RTP/SAVPF 0", "a=crypto:1 AEAD_AES_128_GCM inline:"+key28), "RTP/SAVPF",
			[]transport.SRTPSuite{transport.SRTPAEADAES128GCM}, nil},
		{"plain AVP ignores crypto", withHead("m=audio 4000 RTP/AVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30), "RTP/AVP", nil, nil},
		{"SAVP with only MKI", withHead("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30+"|2^31|1:1"), "", nil, ErrNoCommonCodec},
		{"SAVP without crypto", withHead("m=audio 4000 RTP/SAVP 0"), "", nil, ErrNoCommonCodec},
		{"DTLS-SRTP", withHead("m=audio 4000 UDP/TLS/RTP/SAVP 0"), "", nil, ErrNoCommonCodec},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseSDP(tc.body)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Proto != tc.proto || len(o.Crypto) != len(tc.suites) {
				t.Fatalf("proto %q, %d crypto lines; want %q, %d", o.Proto, len(o.Crypto), tc.proto, len(tc.suites))
			}
			for i, s := range tc.suites {
				if o.Crypto[i].Suite != s {
					t.Errorf("crypto %d: %s, want %s", i, o.Crypto[i].Suite, s)
				}
			}
		})
	}
}

// Our SRTP offer and an answer to it written by SessionSDP parse back to
// the same keys on both sides, and the answer's key is not the offer's.
func TestSRTPOfferAnswerRoundTrip(t *testing.T) {
	pcmu := codec.Codecs()[0]
	offered := offerCrypto(defaultSRTPSuites)
	offer := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30000"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, Crypto: offered}.Marshal()
	if !bytes.Contains(offer, []byte("m=audio 30000 RTP/SAVP 0")) {
		t.Fatalf("offer m-line:\n%s", offer)
	}
	o, err := ParseSDP(offer)
	if err != nil || len(o.Crypto) != 2 {
		t.Fatalf("our offer: %v, %d crypto lines", err, len(o.Crypto))
	}
	for _, pick := range []int{0, 1} {
		c := o.Crypto[pick]
		ours := CryptoAttr{Tag: c.Tag, Suite: c.Suite, Key: newCryptoKey(c.Suite)}
		ans := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30002"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0},
			Crypto: []CryptoAttr{ours}, Answer: o}.Marshal()
		cfg, tag, err := answerConfig(ans, offered, SRTPRequired)
		if err != nil {
			t.Fatal(err)
		}
		if tag != c.Tag || cfg.SRTP == nil || cfg.SRTP.Suite != c.Suite ||
			!bytes.Equal(cfg.SRTP.Local, offered[pick].Key) || !bytes.Equal(cfg.SRTP.Remote, ours.Key) {
			t.Fatalf("answer %d: tag %d keys %v", pick, tag, cfg.SRTP)
		}
		if bytes.Equal(ours.Key, offered[pick].Key) {
			t.Fatal("answer reuses the offer's key")
		}
	}
	// An answer naming a tag we did not offer, and a plain answer under
	// "required", are refused.
	bad := CryptoAttr{Tag: 9, Suite: transport.SRTPAESCM128SHA1_80, Key: newCryptoKey(transport.SRTPAESCM128SHA1_80)}
	ans := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30002"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}, Crypto: []CryptoAttr{bad}}.Marshal()
	if _, _, err := answerConfig(ans, offered, SRTPRequired); !errors.Is(err, ErrBadSDP) {
		t.Errorf("unknown tag: %v", err)
	}
	plain := SessionSDP{Addr: netip.MustParseAddrPort("127.0.0.1:30002"), Codecs: []codec.CodecSpec{pcmu}, PTs: []uint8{0}}.Marshal()
	if _, _, err := answerConfig(plain, offered, SRTPRequired); !errors.Is(err, ErrSRTPRequired) {
		t.Errorf("plain answer, SRTP required: %v", err)
	}
	if cfg, _, err := answerConfig(plain, offered, SRTPOptional); err != nil || cfg.SRTP != nil {
		t.Errorf("plain answer, SRTP optional: %v %v", err, cfg.SRTP)
	}
	if _, _, err := answerConfig(ans, nil, SRTPOff); !errors.Is(err, ErrBadSDP) {
		t.Errorf("SRTP answer to a plain offer: %v", err)
	}
}

func TestRedactSDP(t *testing.T) {
	body := withHead("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30+"|2^31", "a=crypto:2 AEAD_AES_128_GCM INLINE:"+key28, "k=clear:secret")
	out := RedactSDP(body)
	for _, secret := range []string{key30, key28, "secret"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Fatalf("%q left in\n%s", secret, out)
		}
	}
	if !bytes.Contains(out, []byte("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(redacted)|2^31")) || !bytes.Contains(out, []byte("m=audio 4000 RTP/SAVP 0")) {
		t.Fatalf("redaction took too much:\n%s", out)
	}
	o, err := ParseSDP(withHead("m=audio 4000 RTP/SAVP 0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"+key30))
	if err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprintf("%v %+v", *o, *o); strings.Contains(s, key30[:16]) || strings.Contains(s, fmt.Sprint(o.Crypto[0].Key)) {
		t.Fatalf("MediaOffer printed a key: %s", s)
	}
	c, _ := parseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + key30)
	if s := fmt.Sprintf("%v %+v %#v %s", c, c, c, c); strings.Contains(s, key30[:16]) || strings.Contains(s, fmt.Sprint(c.Key)) {
		t.Fatalf("CryptoAttr printed its key: %s", s)
	}
}

func TestSRTPPolicyConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchboard.toml")
	body := `[[users]]
name = "alice"
password = "pw"
srtp = "required"

[[users]]
name = "bob"
password = "pw"

[[trunks]]
name = "carrier"
host = "127.0.0.1"
srtp = "optional"
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, err := LoadDirectory(path)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := dir.Lookup("alice"); a.SRTP != SRTPRequired {
		t.Errorf("alice: %q", a.SRTP)
	}
	if b, _ := dir.Lookup("bob"); b.SRTP != SRTPOff {
		t.Errorf("bob: %q", b.SRTP)
	}
	trunks, err := LoadTrunks(path)
	if err != nil || trunks[0].SRTP != SRTPOptional {
		t.Fatalf("trunk: %v %v", trunks, err)
	}
	if err := os.WriteFile(path, []byte("[[users]]\nname = \"x\"\npassword = \"y\"\nsrtp = \"always\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDirectory(path); err == nil {
		t.Fatal("srtp = \"always\" accepted")
	}
}

func FuzzParseCrypto(f *testing.F) {
	for _, s := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30,
		"1 AEAD_AES_128_GCM inline:" + key28 + "|2^31",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + "|2^20|1:4",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + key30 + ";inline:" + key30 + " KDR=1",
		"99 X inline:|||",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseCrypto(v)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrUnsupportedCrypto) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if len(c.Key) != c.Suite.KeyLen() {
			t.Fatalf("accepted a %d-byte key for %s", len(c.Key), c.Suite)
		}
		back, err := parseCrypto(c.value())
		if err != nil || back.Tag != c.Tag || back.Suite != c.Suite || !bytes.Equal(back.Key, c.Key) {
			t.Fatalf("re-parse of %q: %v", c.value(), err)
		}
	})
}

// answerOffer on a leg whose far end requires SRTP: a plain offer (as in
// a re-INVITE or UPDATE) is refused with 488, an SRTP one is answered
// with the offer's tag and suite and our own fresh key, kept when the
// same suite is offered again with a new key from the peer.
func TestApplyRemoteOfferSRTPPolicy(t *testing.T) {
	pool, err := transport.NewPortPool(43000, 43019)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := media.NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), media.EndpointOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	a := &Agent{cfg: Config{}}
	l := &Leg{agent: a, ep: ep, log: slogDiscard(), ip: netip.MustParseAddr("127.0.0.1"), srtp: SRTPRequired}
	if _, code := l.applyRemoteOffer(withHead("m=audio 4000 RTP/AVP 0")); code != 488 {
		t.Fatalf("plain offer: status %d, want 488", code)
	}
	offer := func(key string) []byte {
		return withHead("m=audio 4000 RTP/SAVP 0", "a=crypto:5 AEAD_AES_128_GCM inline:"+key, "a=crypto:6 AES_CM_128_HMAC_SHA1_80 inline:"+key30)
	}
	body, code := l.applyRemoteOffer(offer(key28))
	if code != 0 {
		t.Fatalf("SRTP offer: status %d", code)
	}
	ans, err := ParseSDP(body)
	if err != nil || ans.Proto != "RTP/SAVP" || len(ans.Crypto) != 1 || ans.Crypto[0].Tag != 5 || ans.Crypto[0].Suite != transport.SRTPAEADAES128GCM {
		t.Fatalf("answer %v %+v:\n%s", err, ans, RedactSDP(body))
	}
	keys := ep.Config().SRTP
	if keys == nil || !bytes.Equal(keys.Local, ans.Crypto[0].Key) || base64.StdEncoding.EncodeToString(keys.Remote) != key28 {
		t.Fatal("endpoint keys do not match the exchange")
	}
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x11}, 28))
	body, _ = l.applyRemoteOffer(offer(other))
	again, _ := ParseSDP(body)
	if !bytes.Equal(again.Crypto[0].Key, keys.Local) {
		t.Error("our key changed on a re-offer of the same suite")
	}
	if base64.StdEncoding.EncodeToString(ep.Config().SRTP.Remote) != other {
		t.Error("the peer's new key was not taken")
	}
	// Suites restricted to AES-CM: the GCM line is passed over for tag 6.
	a.cfg.SRTPSuites = []transport.SRTPSuite{transport.SRTPAESCM128SHA1_80}
	body, _ = l.applyRemoteOffer(offer(key28))
	if ans, _ := ParseSDP(body); ans.Crypto[0].Tag != 6 {
		t.Errorf("answered tag %d, want 6 (AES-CM)", ans.Crypto[0].Tag)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
