package sip

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// ackTo is the ACK of the 200 res (a response to p.invite(id)), with
// CSeq number cseq and body sdp ("" for none).
func (p *shedPhone) ackTo(t *testing.T, id, res string, cseq string, sdp string) string {
	return p.inDialog(t, "ACK", id, res, cseq, sdp)
}

// inDialog is a request of method in the dialog of the 200 res (a
// response to p.invite(id)), with CSeq number cseq and body sdp.
func (p *shedPhone) inDialog(t *testing.T, method, id, res string, cseq string, sdp string) string {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(res))
	if err != nil {
		t.Fatalf("response does not parse: %v\n%s", err, res)
	}
	tag, _ := msg.(*sip.Response).To().Params.Get("tag")
	req := method + " sip:echo@" + p.server.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + p.conn.LocalAddr().String() + ";branch=z9hG4bK" + method + "-" + id + "-" + cseq + "\r\n" +
		"From: <sip:t@guest.invalid>;tag=f" + id + "\r\nTo: <sip:echo@" + p.server.String() + ">;tag=" + tag + "\r\nCall-ID: " + id + "\r\nCSeq: " + cseq + " " + method + "\r\nMax-Forwards: 70\r\n"
	if sdp == "" {
		return req + "Content-Length: 0\r\n\r\n"
	}
	return req + "Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
}

// newAnsweringAgent is newRawAgent answering every call: legs gets each
// new leg, answered the result of its Answer.
func newAnsweringAgent(t *testing.T) (a *Agent, p *shedPhone, legs chan *Leg, answered chan error) {
	legs, answered = make(chan *Leg, 1), make(chan error, 1)
	a, p = newRawAgent(t, OverloadOptions{MaxSchedLatency: -1}, func(l *Leg) {
		legs <- l
		go func() { answered <- l.Answer(context.Background()) }()
	})
	return a, p, legs, answered
}

// waitRemoteHangup waits (3 s at most) for l to end as a remote hangup.
func waitRemoteHangup(t *testing.T, l *Leg) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the leg did not end")
	}
	if !errors.Is(l.Err(), ErrRemoteHangup) {
		t.Fatalf("leg ended with %v, want ErrRemoteHangup", l.Err())
	}
}

// answerResult is what Answer returned, within 3 s.
func answerResult(t *testing.T, answered <-chan error, when string) error {
	t.Helper()
	select {
	case err := <-answered:
		return err
	case <-time.After(3 * time.Second):
		t.Fatalf("Answer did not return %s", when)
		return nil
	}
}

// call sends the INVITE of call id and returns its 200.
func (p *shedPhone) call(t *testing.T, id string) string {
	t.Helper()
	p.send(p.invite(id))
	res := p.next(id, 3*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("INVITE %s: want 200, got %q", id, res)
	}
	return res
}

// answeredCall places call id, ACKs its 200 and waits for Answer; it
// returns the 200 and the leg.
func (p *shedPhone) answeredCall(t *testing.T, id string, legs <-chan *Leg, answered <-chan error) (string, *Leg) {
	t.Helper()
	res := p.call(t, id)
	l := <-legs
	p.send(p.ackTo(t, id, res, "1", ""))
	if err := answerResult(t, answered, "after the ACK"); err != nil {
		t.Fatalf("Answer: %v", err)
	}
	return res, l
}

// responseTo returns the next response of call id with CSeq cseq ("2
// BYE"), skipping retransmissions of the INVITE's 200.
func (p *shedPhone) responseTo(id, cseq string) string {
	got := ""
	for range 5 {
		if got = p.next(id, 3*time.Second); got == "" || strings.Contains(got, "CSeq: "+cseq+"\r\n") {
			break
		}
	}
	return got
}

// The ACK of a plain answered call is taken in the read loop and ends
// Answer's wait; an ACK whose CSeq is not the INVITE's is left to sipgo
// (and does not confirm the call); a retransmitted ACK and an ACK
// carrying the SDP answer to our offer (a late-offer call) go the sipgo
// way and still work. Either way AnsweredAt is set when Answer returns.
func TestAckTakenInReadLoop(t *testing.T) {
	answered := make(chan error, 4)
	a, p := newRawAgent(t, OverloadOptions{MaxSchedLatency: -1}, func(l *Leg) {
		go func() { answered <- l.Answer(context.Background()) }()
	})
	waitAnswer := func(d time.Duration) (done bool, err error) {
		select {
		case err := <-answered:
			return true, err
		case <-time.After(d):
			return false, nil
		}
	}

	p.send(p.invite("fast-1"))
	res := p.next("fast-1", 3*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("INVITE: want 200, got %q", res)
	}
	p.send(p.ackTo(t, "fast-1", res, "7", "")) // not the INVITE's CSeq
	if done, err := waitAnswer(300 * time.Millisecond); done {
		t.Fatalf("an ACK with another CSeq confirmed the call (Answer returned %v)", err)
	}
	if n := a.fastAcks.Load(); n != 0 {
		t.Fatalf("%d ACKs taken in the read loop, want 0 (wrong CSeq)", n)
	}
	ack := p.ackTo(t, "fast-1", res, "1", "")
	p.send(ack)
	if done, err := waitAnswer(3 * time.Second); !done || err != nil {
		t.Fatalf("the ACK did not end Answer's wait: done %v, error %v", done, err)
	}
	if n := a.fastAcks.Load(); n != 1 {
		t.Fatalf("%d ACKs taken in the read loop, want 1", n)
	}
	if legByCallID(t, a, "fast-1").AnsweredAt().IsZero() {
		t.Fatal("Answer returned with AnsweredAt unset (ACK taken in the read loop)")
	}
	p.send(ack) // a retransmission: the dialog is confirmed, sipgo absorbs it
	time.Sleep(50 * time.Millisecond)
	if n := a.fastAcks.Load(); n != 1 {
		t.Fatalf("a retransmitted ACK was taken in the read loop (%d)", n)
	}

	// A late offer: no SDP in the INVITE, ours in the 200, the answer in the ACK.
	late := strings.Replace(p.invite("fast-2"), "Content-Type: application/sdp\r\n", "", 1)
	late = late[:strings.Index(late, "Content-Length: ")] + "Content-Length: 0\r\n\r\n"
	p.send(late)
	res = p.next("fast-2", 3*time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 200 ") || !strings.Contains(res, "m=audio ") {
		t.Fatalf("late-offer INVITE: want a 200 with our offer, got %q", res)
	}
	answer := "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	p.send(p.ackTo(t, "fast-2", res, "1", answer))
	if done, err := waitAnswer(3 * time.Second); !done || err != nil {
		t.Fatalf("late offer: the ACK with the answer did not complete Answer: done %v, error %v", done, err)
	}
	if n := a.fastAcks.Load(); n != 1 {
		t.Fatalf("an ACK with a body was taken in the read loop (%d)", n)
	}
	l := legByCallID(t, a, "fast-2")
	if l.AnsweredAt().IsZero() {
		t.Fatal("Answer returned with AnsweredAt unset (ACK through sipgo)")
	}
	if got := l.Endpoint().Config().Remote.Port(); got != 4002 {
		t.Fatalf("late offer: remote RTP port %d, want 4002 from the ACK's answer", got)
	}
}

// legByCallID returns a's inbound leg of Call-ID id.
func legByCallID(t *testing.T, a *Agent, id string) *Leg {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.uas {
		if l.callID == id {
			return l
		}
	}
	t.Fatalf("no inbound leg of Call-ID %s", id)
	return nil
}

// A BYE in the dialog of our 200 with no ACK seen (lost, or queued behind
// the BYE) means the caller had the 200: Answer reports the call
// answered, AnsweredAt is when the 200 went, and the leg ends as a
// remote hangup, not a cancel.
func TestByeWithoutAckIsAnswered(t *testing.T) {
	_, p, legs, answered := newAnsweringAgent(t)
	res := p.call(t, "noack-1")
	got200 := time.Now()
	l := <-legs
	if !l.AnsweredAt().IsZero() {
		t.Fatal("answered before any ACK or BYE")
	}
	p.send(p.inDialog(t, "BYE", "noack-1", res, "2", ""))
	if bye := p.responseTo("noack-1", "2 BYE"); !strings.HasPrefix(bye, "SIP/2.0 200 ") {
		t.Fatalf("BYE: want its 200, got %q", bye)
	}
	if err := answerResult(t, answered, "after the BYE"); err != nil {
		t.Fatalf("Answer: %v, want nil (the caller had the 200)", err)
	}
	if at := l.AnsweredAt(); at.IsZero() || at.After(got200) {
		t.Fatalf("AnsweredAt %v, want the 200's time (at or before %v)", at, got200)
	}
	waitRemoteHangup(t, l)
}

// An answered call whose ACK does not come ends after AckTimeout
// (ErrNoAck); while the agent refuses INVITEs for overload, the ACK may
// be queued behind the flood, and the call waits on for it.
func TestAckTimeoutStretchedUnderOverload(t *testing.T) {
	const ackTimeout = 300 * time.Millisecond
	answered := make(chan error, 1)
	a, p := newRawAgentWith(t, func(c *Config) {
		c.AckTimeout = ackTimeout
		c.Overload = OverloadOptions{MaxSchedLatency: -1}
	}, func(l *Leg) {
		go func() { answered <- l.Answer(context.Background()) }()
	})
	p.call(t, "ackto-quiet")
	select {
	case err := <-answered:
		if !errors.Is(err, ErrNoAck) {
			t.Fatalf("no ACK, no overload: Answer returned %v, want ErrNoAck", err)
		}
	case <-time.After(10 * ackTimeout):
		t.Fatalf("no ACK, no overload: Answer still waiting after %s", 10*ackTimeout)
	}

	a.refused(time.Now()) // an INVITE just got 503 for overload
	res := p.call(t, "ackto-busy")
	if n := a.PendingInvites(); n != 1 {
		t.Fatalf("%d pending INVITEs while the 200 waits for its ACK, want 1", n)
	}
	select {
	case err := <-answered:
		t.Fatalf("under overload the call gave up its ACK after AckTimeout: %v", err)
	case <-time.After(3 * ackTimeout):
	}
	// Past AckTimeout it waits on, but no longer as a pending INVITE:
	// after a burst such calls kept new ones out.
	if n := a.PendingInvites(); n != 0 {
		t.Fatalf("%d pending INVITEs after AckTimeout under overload, want 0 (the call only waits for its ACK)", n)
	}
	p.send(p.ackTo(t, "ackto-busy", res, "1", ""))
	if err := answerResult(t, answered, "after the late ACK"); err != nil {
		t.Fatalf("the late ACK under overload: Answer returned %v, want nil", err)
	}
}

// The BYE of an answered, ACKed call is taken in the read loop: a 200
// built from its headers, the leg ended as a remote hangup, and its
// retransmissions answered 200 again, before and after the leg is gone.
// A BYE in a dialog we do not have still gets 481 (through sipgo).
func TestByeTakenInReadLoop(t *testing.T) {
	a, p, legs, answered := newAnsweringAgent(t)
	res, l := p.answeredCall(t, "fastbye-1", legs, answered)
	byeOK := func(what, bye string) {
		t.Helper()
		p.send(bye)
		got := p.responseTo("fastbye-1", "2 BYE")
		if !strings.HasPrefix(got, "SIP/2.0 200 ") || headerOf(got, "Via") != headerOf(bye, "Via") ||
			headerOf(got, "To") != headerOf(bye, "To") || headerOf(got, "From") != headerOf(bye, "From") {
			t.Fatalf("%s: want a 200 with the BYE's Via, From and To, got %q", what, got)
		}
	}
	bye := p.inDialog(t, "BYE", "fastbye-1", res, "2", "")
	byeOK("BYE", bye)
	waitRemoteHangup(t, l)
	if n := a.fastByes.Load(); n != 1 {
		t.Fatalf("%d BYEs taken in the read loop, want 1", n)
	}
	for end := time.Now().Add(3 * time.Second); a.InboundCalls() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	byeOK("retransmitted BYE", bye)
	if n := a.fastByes.Load(); n != 1 {
		t.Fatalf("a retransmitted BYE counted as another call's (%d)", n)
	}

	stray := strings.ReplaceAll(bye, "fastbye-1", "fastbye-none")
	p.send(stray)
	if got := p.next("fastbye-none", 3*time.Second); !strings.HasPrefix(got, "SIP/2.0 481 ") {
		t.Fatalf("BYE in no dialog: want 481, got %q", got)
	}
}

// topViaBranch is the branch takeBye reads from data: the lint pass's
// top Via, through viaBranch.
func topViaBranch(data []byte) []byte {
	var h rawHead
	lintMessageInto(data, &h)
	return viaBranch(h.topVia)
}

func TestTopViaBranch(t *testing.T) {
	for _, c := range []struct{ msg, want string }{
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK77;rport\r\nCSeq: 2 BYE\r\n\r\n", "z9hG4bK77"},
		{"BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4 ; rport ; Branch = z9hG4bKx\r\n\r\n", "z9hG4bKx"},
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bKtop, SIP/2.0/UDP p2;branch=z9hG4bKnext\r\n\r\n", "z9hG4bKtop"},
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP p1;received=1.1.1.1, SIP/2.0/UDP p2;branch=z9hG4bKnext\r\n\r\n", ""},
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=1234\r\n\r\n", ""},    // RFC 2543
		{"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK\r\n\r\n", ""}, // the cookie alone
		{"BYE sip:a@b SIP/2.0\r\nCSeq: 2 BYE\r\n\r\nVia: x;branch=z9hG4bKbody", ""},    // in the body
	} {
		if got := string(topViaBranch([]byte(c.msg))); got != c.want {
			t.Errorf("topViaBranch(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}

func FuzzTopViaBranch(f *testing.F) {
	f.Add([]byte("BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK77;rport\r\n\r\n"))
	f.Add([]byte("BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKa, SIP/2.0/UDP g\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := topViaBranch(data)
		if len(b) > 0 && (!bytes.HasPrefix(b, []byte(sip.RFC3261BranchMagicCookie)) || !bytes.Contains(data, b)) {
			t.Fatalf("branch %q is not an RFC 3261 branch from the message", b)
		}
	})
}

// A late retransmission of the INVITE of a call that ended (its BYE
// taken in the read loop) is absorbed: no new call, no response.
func TestInviteRetransmissionAfterFastByeAbsorbed(t *testing.T) {
	a, p, legs, answered := newAnsweringAgent(t)
	res, l := p.answeredCall(t, "late-inv", legs, answered)
	p.send(p.inDialog(t, "BYE", "late-inv", res, "2", ""))
	if got := p.responseTo("late-inv", "2 BYE"); !strings.HasPrefix(got, "SIP/2.0 200 ") {
		t.Fatalf("BYE: want 200, got %q", got)
	}
	waitRemoteHangup(t, l)
	for end := time.Now().Add(3 * time.Second); a.InboundCalls() > 0 && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	p.send(p.invite("late-inv"))
	for {
		got := p.next("late-inv", 700*time.Millisecond)
		if got == "" {
			break
		}
		if strings.Contains(got, "CSeq: 1 INVITE") && !strings.Contains(got, headerOf(res, "To")) {
			t.Fatalf("the INVITE's late retransmission was answered as a new call: %q", got)
		}
	}
	select {
	case l := <-legs:
		t.Fatalf("the INVITE's late retransmission made a new leg %s", l.callID)
	default:
	}
}

// The 200 to an INVITE is retransmitted until the ACK comes at intervals
// that start at T1 and double up to T2 (RFC 3261 13.3.1.4): 0.5, 1.5 and
// 3.5 s after the first, all inside the 4 s AckTimeout. A caller whose
// first three copies are lost still gets the call. (sipgo alone sends the
// second copy at T1+T2, 4.5 s: after AckTimeout had ended the call.)
//
// Under overload (an INVITE refused in the AckTimeout before the 200) the
// ACK is late, not lost, and the two extra copies are not sent: sipgo's
// copy at 0.5 s is the only one in the first 4 s.
func TestAnswer200RetransmittedOnTheRFCSchedule(t *testing.T) {
	answered := make(chan error, 2)
	a, p := newRawAgentWith(t, func(c *Config) {
		c.AckTimeout = 4 * time.Second
		c.Overload = OverloadOptions{MaxSchedLatency: -1}
	}, func(l *Leg) {
		go func() { answered <- l.Answer(context.Background()) }()
	})
	first := p.call(t, "rfc-2xx")
	start := time.Now()
	var at []time.Duration
	for len(at) < 3 {
		res := p.next("rfc-2xx", 4*time.Second-time.Since(start))
		if res == "" {
			break
		}
		if !strings.HasPrefix(res, "SIP/2.0 200 ") || headerOf(res, "To") != headerOf(first, "To") {
			t.Fatalf("want a copy of the 200, got %q", res)
		}
		at = append(at, time.Since(start))
	}
	t.Logf("copies of the 200 after the first: %v", at)
	if len(at) < 3 {
		t.Fatalf("%d copies of the 200 within the 4 s AckTimeout, want 3 (at 0.5, 1.5 and 3.5 s)", len(at))
	}
	// Each interval doubles the one before (timers on a loaded machine
	// run late, never early).
	for i, want := range []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond} {
		if at[i] < want-100*time.Millisecond || at[i] > want+400*time.Millisecond {
			t.Fatalf("copy %d of the 200 at %v, want about %v (all: %v)", i+1, at[i], want, at)
		}
	}
	p.send(p.ackTo(t, "rfc-2xx", first, "1", ""))
	if err := answerResult(t, answered, "after the ACK of the fourth copy"); err != nil {
		t.Fatalf("Answer: %v, want nil", err)
	}

	a.refused(time.Now()) // an INVITE just got 503 for overload
	first = p.call(t, "rfc-2xx-busy")
	start = time.Now()
	at = at[:0]
	for time.Since(start) < 3800*time.Millisecond {
		res := p.next("rfc-2xx-busy", 3800*time.Millisecond-time.Since(start))
		if res == "" {
			break
		}
		at = append(at, time.Since(start))
	}
	if len(at) != 1 {
		t.Fatalf("under overload: copies of the 200 at %v in 3.8 s, want one (sipgo's, at 0.5 s)", at)
	}
	p.send(p.ackTo(t, "rfc-2xx-busy", first, "1", ""))
	if err := answerResult(t, answered, "after the late ACK under overload"); err != nil {
		t.Fatalf("Answer under overload: %v, want nil", err)
	}
}
