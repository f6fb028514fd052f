package testharness_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Attacker-style probes of issue 13 ("a server that holds up on a hostile
// network"), each on loopback against a real server. The attacker is a
// bare UDP socket that writes INVITEs by hand and never ACKs; 127.0.0.2
// plays a host other than the phone's.

// rawCaller sends hand-written INVITEs from one UDP socket and never
// ACKs the answers: a spoofed or abandoned call.
type rawCaller struct {
	conn   *net.UDPConn
	server netip.AddrPort
	finals sync.Map // Call-ID -> final status
	bodies sync.Map // Call-ID -> body of the final response
	tos    sync.Map // Call-ID -> To header of the final response
}

func newRawCaller(t *testing.T, ip string, server netip.AddrPort) *rawCaller {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := &rawCaller{conn: conn, server: server}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if msg := string(buf[:n]); len(msg) > 4 && msg[:4] == "BYE " {
				rc.answerBye(msg)
				continue
			}
			var code int
			var callID, to string
			fmt.Sscanf(string(buf[:n]), "SIP/2.0 %d", &code)
			for _, line := range splitLines(string(buf[:n])) {
				if len(line) > 9 && line[:9] == "Call-ID: " {
					callID = line[9:]
				}
				if len(line) > 4 && line[:4] == "To: " {
					to = line
				}
			}
			if code >= 200 {
				rc.tos.LoadOrStore(callID, to)
			}
			if code >= 200 {
				if _, loaded := rc.finals.LoadOrStore(callID, code); !loaded {
					msg := string(buf[:n])
					for i := 0; i+4 <= len(msg); i++ {
						if msg[i:i+4] == "\r\n\r\n" {
							rc.bodies.Store(callID, msg[i+4:])
							break
						}
					}
				}
			}
		}
	}()
	return rc
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\r' && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
			i++
		}
		s = s[i:]
	}
	return out
}

// invite sends one INVITE for user whose SDP names media as the caller's
// RTP address (any address: the attacker chooses it).
func (rc *rawCaller) invite(t *testing.T, callID, user string, media netip.AddrPort) {
	t.Helper()
	local := rc.conn.LocalAddr().String()
	target := rc.server.String()
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n",
		media.Addr(), media.Addr(), media.Port())
	msg := "INVITE sip:" + user + "@" + target + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + callID + "\r\n" +
		"From: <sip:attacker@" + testharness.GuestDomain + ">;tag=a" + callID + "\r\n" +
		"To: <sip:" + user + "@" + target + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:attacker@" + local + ">\r\n" +
		"Max-Forwards: 70\r\n" +
		"Content-Type: application/sdp\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n\r\n", len(sdp)) + sdp
	if _, err := rc.conn.WriteToUDPAddrPort([]byte(msg), rc.server); err != nil {
		t.Fatal(err)
	}
}

// answerBye says 200 to a BYE (the server hanging up at shutdown).
func (rc *rawCaller) answerBye(msg string) {
	res := "SIP/2.0 200 OK\r\n"
	for _, line := range splitLines(msg) {
		for _, h := range []string{"Via: ", "From: ", "To: ", "Call-ID: ", "CSeq: "} {
			if len(line) > len(h) && line[:len(h)] == h {
				res += line + "\r\n"
			}
		}
	}
	res += "Content-Length: 0\r\n\r\n"
	// Via carries rport/received; answering the source is enough here.
	_, _ = rc.conn.WriteToUDPAddrPort([]byte(res), rc.server)
}

// ack acknowledges the 2xx of an INVITE sent with invite.
func (rc *rawCaller) ack(t *testing.T, callID, user string) { rc.inDialog(t, "ACK", 1, callID, user) }

// bye hangs up a call that was ACKed.
func (rc *rawCaller) bye(t *testing.T, callID, user string) { rc.inDialog(t, "BYE", 2, callID, user) }

func (rc *rawCaller) inDialog(t *testing.T, method string, cseq int, callID, user string) {
	t.Helper()
	to, _ := rc.tos.Load(callID)
	local := rc.conn.LocalAddr().String()
	msg := method + " sip:" + user + "@" + rc.server.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + method + callID + "\r\n" +
		"From: <sip:attacker@" + testharness.GuestDomain + ">;tag=a" + callID + "\r\n" +
		to.(string) + "\r\n" +
		"Call-ID: " + callID + "\r\n" +
		fmt.Sprintf("CSeq: %d %s\r\n", cseq, method) +
		"Max-Forwards: 70\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := rc.conn.WriteToUDPAddrPort([]byte(msg), rc.server); err != nil {
		t.Fatal(err)
	}
}

// answerAddr returns the RTP address in the SDP of the call's 200.
func (rc *rawCaller) answerAddr(t *testing.T, callID string) netip.AddrPort {
	t.Helper()
	v, ok := rc.bodies.Load(callID)
	if !ok {
		t.Fatalf("no answer for %s", callID)
	}
	o, err := sip.ParseSDP([]byte(v.(string)))
	if err != nil {
		t.Fatalf("answer SDP of %s: %v", callID, err)
	}
	return o.Remote
}

func (rc *rawCaller) final(callID string) int {
	if v, ok := rc.finals.Load(callID); ok {
		return v.(int)
	}
	return 0
}

// udpCounter counts the datagrams and bytes a UDP socket receives.
type udpCounter struct {
	conn           *net.UDPConn
	packets, bytes atomic.Int64
}

func newUDPCounter(t *testing.T, ip string) *udpCounter {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &udpCounter{conn: conn}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			c.packets.Add(1)
			c.bytes.Add(int64(n))
		}
	}()
	return c
}

func (c *udpCounter) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Finding 1: one INVITE that is never ACKed, whose SDP names a third
// party's address, used to make the server stream 32.5 s of audio there
// (~700x the INVITE's bytes). Now the third party gets at most the
// unverified budget (4 packets), and the call and its port are released
// after the ACK timeout (4 s) instead of 32 s.
func TestUnverifiedAddressGetsNoRTP(t *testing.T) {
	srv := startServer(t, framework.Config{RTPPortMin: 31000, RTPPortMax: 31019}, apps.Tone(1000))
	victim := newUDPCounter(t, "127.0.0.1")
	attacker := newRawCaller(t, "127.0.0.1", srv.SIPAddr())
	attacker.invite(t, "amp1", "tone", victim.addr())
	testharness.WaitUntil(t, 5*time.Second, "the server to answer", func() bool { return attacker.final("amp1") == 200 })
	start := time.Now()
	time.Sleep(3 * time.Second)
	pkts, bytes := victim.packets.Load(), victim.bytes.Load()
	t.Logf("victim received %d RTP packets, %d bytes in 3 s after the 200 (INVITE ~450 bytes)", pkts, bytes)
	if pkts > 4 {
		t.Fatalf("an address that never proved it wants RTP received %d packets (%d bytes) in 3 s", pkts, bytes)
	}
	testharness.WaitUntil(t, 6*time.Second, "the un-ACKed call to end", func() bool { return srv.ActiveCalls() == 0 })
	t.Logf("un-ACKed call released %v after the 200", time.Since(start).Round(100*time.Millisecond))
}

// Finding 3: RTP sent to a call's port before the phone's first packet
// latched the call onto the attacker (even from another IP): the phone
// heard nothing and the attacker got the call's audio. Here an attacker on
// 127.0.0.2 sprays every port of the server's RTP range from before the
// call; the phone still hears the tone and the attacker receives nothing.
// The ports of consecutive calls are not sequential either.
func TestEarlyRTPFromStrangerCapturesNothing(t *testing.T) {
	const lo, hi = 31100, 31119
	srv := startServer(t, framework.Config{RTPPortMin: lo, RTPPortMax: hi}, apps.Tone(1000))
	attacker := newUDPCounter(t, "127.0.0.2")
	stop := make(chan struct{})
	var sprayed sync.WaitGroup
	sprayed.Add(1)
	go func() {
		defer sprayed.Done()
		pkt := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef}, make([]byte, 160)...)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 4000; i++ { // at most 20 s
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for port := lo; port <= hi; port += 2 {
				_, _ = attacker.conn.WriteToUDPAddrPort(pkt, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)))
			}
		}
	}()
	defer func() { close(stop); sprayed.Wait() }()
	time.Sleep(100 * time.Millisecond) // the spray is running before the call

	h := testharness.New(t, srv)
	call := h.Call("tone", testharness.HarnessCallOptions{Name: "the call during a stranger's RTP spray"})
	l := call.ExpectTone(1000)
	t.Logf("phone heard %.0f Hz; attacker received %d packets, %d bytes", l.Frequency, attacker.packets.Load(), attacker.bytes.Load())
	if n := attacker.packets.Load(); n > 0 {
		t.Fatalf("the attacker received %d packets of the call", n)
	}
	ports := []int{int(call.Leg.Endpoint().Config().Remote.Port())}
	call.End()

	// Consecutive calls: are the server's ports guessable?
	sequential := 0
	for i := range 5 {
		c := h.Call("tone", testharness.HarnessCallOptions{Name: fmt.Sprintf("consecutive call %d", i)})
		p := int(c.Leg.Endpoint().Config().Remote.Port())
		if p == ports[len(ports)-1]+2 {
			sequential++
		}
		ports = append(ports, p)
		c.End()
	}
	t.Logf("server ports of consecutive calls: %v", ports)
	if sequential >= 4 {
		t.Fatalf("ports of consecutive calls are sequential: %v", ports)
	}
}

// Finding 4: 50 un-ACKed INVITEs from one guest took every port of a
// 50-pair range for ~32 s, so everybody else got 503. Now one source may
// hold 10 guest calls (and start 5/s), un-ACKed calls are released after
// 4 s, and a phone on another address still gets through with audio.
// (The flood comes from 127.0.0.2: the harness phone's requests leave
// from 127.0.0.1 whatever address it listens on.)
func TestGuestFloodLeavesPortsForOthers(t *testing.T) {
	srv := startServer(t, framework.Config{RTPPortMin: 31200, RTPPortMax: 31299}, apps.Tone(1000))
	sink := newUDPCounter(t, "127.0.0.2")
	attacker := newRawCaller(t, "127.0.0.2", srv.SIPAddr())
	const flood = 50
	for i := range flood {
		attacker.invite(t, fmt.Sprintf("flood%d", i), "tone", sink.addr())
	}
	testharness.WaitUntil(t, 5*time.Second, "every flood INVITE to be answered", func() bool {
		for i := range flood {
			if attacker.final(fmt.Sprintf("flood%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	codes := map[int]int{}
	for i := range flood {
		codes[attacker.final(fmt.Sprintf("flood%d", i))]++
	}
	t.Logf("flood of %d un-ACKed INVITEs from one source: final responses %v; calls held %d", flood, codes, srv.ActiveCalls())

	// The harness phone is on 127.0.0.1: a second source.
	testharness.New(t, srv).Call("tone", testharness.HarnessCallOptions{Name: "a second source's call during the flood"}).ExpectTone(1000)
}

// Finding 5: a success for any user cleared the source's failure count,
// so 45 wrong alice passwords with a valid bob login between every 5 were
// never blocked. Now bob's login forgives only bob's failures: the source
// ends blocked, and even bob's valid registration is refused.
func TestMixedUserGuessingIsBlocked(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "alice-pw"}, sip.Account{Name: "bob", Password: "bob-pw"})
	srv := startServer(t, framework.Config{Users: users}, apps.Tone(1000))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	registrar := srv.SIPAddr().String()
	wrong, bobOK := 0, 0
	for round := range 9 {
		for i := range 5 {
			if err := phone.Register(ctx, registrar, "alice", fmt.Sprintf("guess-%d-%d", round, i)); err == nil {
				t.Fatal("a wrong password registered")
			}
			wrong++
		}
		if err := phone.Register(ctx, registrar, "bob", "bob-pw"); err == nil {
			bobOK++
		}
	}
	err := phone.Register(ctx, registrar, "bob", "bob-pw")
	t.Logf("%d wrong alice passwords, %d of 9 interleaved bob logins accepted; final bob login: %v", wrong, bobOK, err)
	if err == nil {
		t.Fatal("the source guessing alice's password is not blocked: bob's logins cleared its failures")
	}
	if bobOK > 2 {
		t.Fatalf("%d bob logins accepted; the source should be blocked after %d failures", bobOK, srv.Agent().Registrar().Limiter.Max)
	}
}

// Finding 5, enumeration: INVITE scanning told directory users (407) from
// the rest (200). Now every caller that claims a user of this server gets
// the same 407, and a wrong answer gets the same 403 and counts, whether
// the user exists or not; a caller from another domain is a guest.
func TestInviteScanCannotEnumerateUsers(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, apps.Tone(1000))
	phone := newPhone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	status := func(opts sip.DialOptions) int {
		call, err := phone.Dial(ctx, uri(srv, "tone"), opts)
		if err == nil {
			_ = call.Hangup(ctx)
			return 200
		}
		var se *sip.StatusError
		if errors.As(err, &se) {
			return se.Code
		}
		t.Fatalf("dial as %q: %v", opts.FromUser, err)
		return 0
	}
	got := map[string]int{}
	for _, c := range []struct {
		name string
		opts sip.DialOptions
	}{
		{"directory user, no credentials", sip.DialOptions{FromUser: "alice"}},
		{"unknown user, no credentials", sip.DialOptions{FromUser: "zed"}},
		{"directory user, wrong password", sip.DialOptions{FromUser: "alice", Username: "alice", Password: "nope"}},
		{"unknown user, wrong password", sip.DialOptions{FromUser: "zed", Username: "zed", Password: "nope"}},
		{"directory user, right password", sip.DialOptions{FromUser: "alice", Username: "alice", Password: "s3cret"}},
		{"guest from another domain", sip.DialOptions{FromUser: "zed", FromHost: testharness.GuestDomain}},
	} {
		got[c.name] = status(c.opts)
	}
	t.Logf("answers: %v", got)
	if a, z := got["directory user, no credentials"], got["unknown user, no credentials"]; a != z || a != 407 {
		t.Errorf("without credentials: directory user %d, unknown user %d; want the same 407", a, z)
	}
	if a, z := got["directory user, wrong password"], got["unknown user, wrong password"]; a != z || a != 403 {
		t.Errorf("wrong password: directory user %d, unknown user %d; want the same 403", a, z)
	}
	if c := got["directory user, right password"]; c != 200 {
		t.Errorf("right password: %d, want 200", c)
	}
	if c := got["guest from another domain"]; c != 200 {
		t.Errorf("guest: %d, want 200", c)
	}
}

// The NAT rule of strict latching: a phone behind NAT advertises its
// private address (192.168.77.10 here, unreachable) and sends RTP from its
// public one — the address its INVITE came from (127.0.0.1). The server
// latches to it and the phone hears the tone; RTP from any other address
// (127.0.0.2), even sent first, latches nothing and receives nothing.
func TestNATPhoneLatchesFromSignalingAddress(t *testing.T) {
	srv := startServer(t, framework.Config{RTPPortMin: 31300, RTPPortMax: 31319}, apps.Tone(1000))
	caller := newRawCaller(t, "127.0.0.1", srv.SIPAddr())
	caller.invite(t, "nat1", "tone", netip.MustParseAddrPort("192.168.77.10:40000"))
	testharness.WaitUntil(t, 5*time.Second, "the server to answer", func() bool { return caller.final("nat1") == 200 })
	serverRTP := caller.answerAddr(t, "nat1")
	caller.ack(t, "nat1", "tone")

	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	phone, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	pkt := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42}, make([]byte, 160)...)
	for i := range pkt[12:] {
		pkt[12+i] = 0xff // PCMU silence
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), serverRTP.Port())
	for range 3 {
		_, _ = stranger.WriteToUDPAddrPort(pkt, dst)
	}
	time.Sleep(50 * time.Millisecond)
	_, _ = phone.WriteToUDPAddrPort(pkt, dst)

	// Collect what the server sends to the phone until a second of tone.
	var heard []int16
	buf := make([]byte, 1500)
	deadline := time.Now().Add(3 * time.Second)
	for len(heard) < 8000 && time.Now().Before(deadline) {
		_ = phone.SetReadDeadline(deadline)
		n, err := phone.Read(buf)
		if err != nil {
			break
		}
		if n > 12 && buf[1]&0x7f == 0 {
			frame := codec.PCMU{}.Decode(nil, buf[12:n])
			if dsp.RMS(frame) > 1000 || len(heard) > 0 { // skip the idle silence before the prompt
				heard = append(heard, frame...)
			}
		}
	}
	freq, _ := dsp.DominantFrequency(heard, 8000, 100, 3800, 10)
	_ = stranger.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, _ := stranger.Read(buf)
	t.Logf("phone behind NAT heard %d samples, dominant %.0f Hz; the stranger received %d bytes", len(heard), freq, n)
	if len(heard) < 4000 || freq < 980 || freq > 1020 {
		t.Fatalf("the NAT phone did not hear the 1 kHz tone: %d samples, %.0f Hz", len(heard), freq)
	}
	if n > 0 {
		t.Fatal("the stranger that sent first received the call's audio")
	}
	caller.bye(t, "nat1", "tone")
	testharness.WaitUntil(t, 5*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
}
