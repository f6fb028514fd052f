package sip

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const goodInvite = "INVITE sip:ivr@127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n" +
	"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n" +
	"Contact: <sip:a@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nContent-Length: 4\r\n\r\nbody"

func TestLintMessage(t *testing.T) {
	cases := []struct {
		name, msg, problem string
	}{
		{"good", goodInvite, ""},
		{"compact headers", "OPTIONS sip:x@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK2\r\nf: <sip:a@h>;tag=1\r\nt: <sip:x@h>\r\ni: c2\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n", ""},
		{"response", "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK3\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>;tag=2\r\nCall-ID: c3\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n", ""},
		{"keepalive", "\r\n\r\n", ""},
		{"bad version", strings.Replace(goodInvite, "SIP/2.0\r\n", "SIP/7.0\r\n", 1), problemVersion},
		{"no uri", strings.Replace(goodInvite, "sip:ivr@127.0.0.1 ", "", 1), "malformed request URI"},
		{"header without colon", strings.Replace(goodInvite, "Max-Forwards: 70", "Max-Forwards 70", 1), "header line without a name and colon"},
		{"bad cseq", strings.Replace(goodInvite, "CSeq: 1 INVITE", "CSeq: x INVITE", 1), "malformed CSeq"},
		{"huge cseq", strings.Replace(goodInvite, "CSeq: 1 INVITE", "CSeq: 4294967296 INVITE", 1), "CSeq number too large"},
		{"content-length too big", strings.Replace(goodInvite, "Content-Length: 4", "Content-Length: 40", 1), "Content-Length larger than the body"},
		{"content-length negative", strings.Replace(goodInvite, "Content-Length: 4", "Content-Length: -4", 1), "malformed Content-Length"},
		{"no call-id", strings.Replace(goodInvite, "Call-ID: c1\r\n", "", 1), "missing Call-ID"},
		{"no via", strings.Replace(goodInvite, "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n", "", 1), "missing Via"},
		{"no end of headers", strings.Replace(goodInvite, "\r\n\r\nbody", "\r\n", 1), "no empty line after the headers"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := lintMessage([]byte(tc.msg))
			if p != tc.problem {
				t.Fatalf("problem %q, want %q", p, tc.problem)
			}
		})
	}
}

func TestBadRequestEchoesHeaders(t *testing.T) {
	msg := strings.Replace(goodInvite, "Max-Forwards: 70", "Max-Forwards 70", 1)
	res := badRequest([]byte(msg), "header line without a name and colon")
	parsed, err := sip.ParseMessage(res)
	if err != nil {
		t.Fatalf("our 400 does not parse: %v\n%s", err, res)
	}
	r, ok := parsed.(*sip.Response)
	if !ok || r.StatusCode != 400 || r.CallID().Value() != "c1" || r.Via() == nil {
		t.Fatalf("bad 400:\n%s", res)
	}
	if badRequest([]byte("INVITE sip:x SIP/2.0\r\nCSeq: x\r\n\r\n"), "p") != nil {
		t.Fatal("a 400 without Via has nowhere to go")
	}
}

func BenchmarkLintInvite(b *testing.B) {
	msg := []byte(goodInvite)
	b.ReportAllocs()
	for b.Loop() {
		if p, _ := lintMessage(msg); p != "" {
			b.Fatal(p)
		}
	}
}

// FuzzLint feeds arbitrary datagrams to the pre-parser and to sipgo's
// parser: neither may panic, and what the lint passes must be something a
// 400 could be built for without panicking either.
func FuzzLint(f *testing.F) {
	f.Add([]byte(goodInvite))
	f.Add([]byte("SIP/2.0 180 Ringing\r\nVia: x\r\n\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nCSeq: 99999999999 INVITE\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, isReq := lintMessage(data)
		if p != "" && isReq {
			_ = badRequest(data, p)
		}
		_, _ = sip.ParseMessage(data)
	})
}
