package sip

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media/transport"
)

// expectNothing fails if a message for Call-ID id comes within d.
func (p *shedPhone) expectNothing(t *testing.T, id string, d time.Duration, after string) {
	t.Helper()
	if got := p.nextAny(id, d); got != "" {
		t.Fatalf("%s: got %q, want nothing", after, firstLine(got))
	}
}

func firstLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\r\n")
	return line
}

// ackOf is the ACK of the error response res to p.invite(id): the
// INVITE's branch, the response's To tag (RFC 3261 17.1.1.3).
func (p *shedPhone) ackOf(id, res string) string {
	local, server := p.conn.LocalAddr().String(), p.server.String()
	return "ACK sip:echo@" + server + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + id + "\r\n" +
		"From: <sip:t@guest.invalid>;tag=f" + id + "\r\nTo: " + headerOf(res, "To") + "\r\nCall-ID: " + id + "\r\nCSeq: 1 ACK\r\n" +
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
}

// The INVITE server transaction the read loop runs for UDP: a 100 Trying
// when the flow says nothing for 200 ms; a retransmitted INVITE gets the
// last provisional response again and makes no second leg; the error
// response is retransmitted until its ACK (Timer G) and not after; a
// late copy of the INVITE after that is absorbed.
func TestInviteTxRetransmissions(t *testing.T) {
	legs := make(chan *Leg, 2)
	reject := make(chan struct{})
	a, p := newRawAgent(t, OverloadOptions{MaxSchedLatency: -1}, func(l *Leg) {
		legs <- l
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = l.Ringing()
			<-reject
			_ = l.Reject(486, "Busy Here")
		}()
	})
	const id = "inv-tx-1"
	p.send(p.invite(id))
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 100 ") {
		t.Fatalf("want 100 Trying first, got %q", firstLine(got))
	}
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 180 ") {
		t.Fatalf("want 180, got %q", firstLine(got))
	}
	p.send(p.invite(id)) // a retransmission: the 180 again
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 180 ") {
		t.Fatalf("retransmitted INVITE: want the 180 again, got %q", firstLine(got))
	}
	if n := a.readLoopInvites.Load(); n != 1 {
		t.Fatalf("%d INVITEs taken in the read loop, want 1", n)
	}
	close(reject)
	busy := p.nextAny(id, 2*time.Second)
	if !strings.HasPrefix(busy, "SIP/2.0 486 ") {
		t.Fatalf("want 486, got %q", firstLine(busy))
	}
	sent := time.Now()
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 486 ") {
		t.Fatalf("no ACK: want the 486 again (Timer G), got %q", firstLine(got))
	} else if d := time.Since(sent); d < 300*time.Millisecond {
		t.Fatalf("486 retransmitted after %v, want about T1 (500 ms)", d)
	}
	p.send(p.ackOf(id, busy))
	// The copy that crossed the ACK aside, the retransmissions stop.
	if got := p.nextAny(id, 1500*time.Millisecond); got != "" {
		p.expectNothing(t, id, 2500*time.Millisecond, "after the ACK")
	}
	p.send(p.invite(id))
	p.expectNothing(t, id, time.Second, "a late copy of the INVITE")
	select {
	case <-legs:
	default:
		t.Fatal("no leg")
	}
	select {
	case l := <-legs:
		t.Fatalf("a second leg %s from a retransmission", l.callID)
	default:
	}
}

// A CANCEL for an INVITE of ours gets 200, the INVITE 487, the leg ends
// canceled; the 487's ACK stops its retransmissions. A CANCEL that
// matches nothing gets 481.
func TestInviteTxCancel(t *testing.T) {
	legs := make(chan *Leg, 1)
	_, p := newRawAgent(t, OverloadOptions{MaxSchedLatency: -1}, func(l *Leg) {
		_ = l.Ringing()
		legs <- l
	})
	const id = "inv-tx-cancel"
	p.send(p.invite(id))
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 180 ") {
		t.Fatalf("want 180, got %q", firstLine(got))
	}
	l := <-legs
	local, server := p.conn.LocalAddr().String(), p.server.String()
	cancel := func(branch string) string {
		return "CANCEL sip:echo@" + server + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK" + branch + "\r\n" +
			"From: <sip:t@guest.invalid>;tag=f" + id + "\r\nTo: <sip:echo@" + server + ">\r\nCall-ID: " + id + "\r\nCSeq: 1 CANCEL\r\n" +
			"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	}
	p.send(cancel(id))
	var ok, terminated string
	for range 2 {
		got := p.nextAny(id, 2*time.Second)
		switch {
		case strings.HasPrefix(got, "SIP/2.0 200 ") && strings.Contains(got, "CSeq: 1 CANCEL"):
			ok = got
		case strings.HasPrefix(got, "SIP/2.0 487 ") && strings.Contains(got, "CSeq: 1 INVITE"):
			terminated = got
		default:
			t.Fatalf("after CANCEL: got %q", firstLine(got))
		}
	}
	if ok == "" || terminated == "" {
		t.Fatalf("want 200 to CANCEL and 487 to INVITE")
	}
	select {
	case <-l.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the leg did not end")
	}
	if !errors.Is(l.Err(), ErrCanceled) {
		t.Fatalf("leg ended with %v, want ErrCanceled", l.Err())
	}
	p.send(p.ackOf(id, terminated))
	if got := p.nextAny(id, 1500*time.Millisecond); got != "" && !strings.HasPrefix(got, "SIP/2.0 487 ") {
		t.Fatalf("after the 487's ACK: got %q", firstLine(got))
	} else if got != "" {
		p.expectNothing(t, id, 2500*time.Millisecond, "after the 487's ACK")
	}
	p.send(cancel("no-such-invite"))
	if got := p.nextAny(id, 2*time.Second); !strings.HasPrefix(got, "SIP/2.0 481 ") {
		t.Fatalf("a CANCEL that matches nothing: want 481, got %q", firstLine(got))
	}
}

// A retransmission of an answered call's INVITE is absorbed: the 2xx's
// copies are the dialog's business, and no second leg is made.
func TestInviteTxAbsorbsAfter2xx(t *testing.T) {
	a, p, legs, answered := newAnsweringAgent(t)
	const id = "inv-tx-2xx"
	res, l := p.answeredCall(t, id, legs, answered)
	p.send(p.invite(id))
	if got := p.nextAny(id, time.Second); got != "" && !(strings.HasPrefix(got, "SIP/2.0 200 ") && headerOf(got, "To") == headerOf(res, "To")) {
		t.Fatalf("a retransmitted INVITE after the 2xx was answered: %q", firstLine(got))
	}
	select {
	case l := <-legs:
		t.Fatalf("a second leg %s from a retransmission", l.callID)
	default:
	}
	if n := a.invites.len(); n != 0 {
		t.Fatalf("%d INVITE transactions still run after the call was ACKed", n)
	}
	p.send(p.inDialog(t, "BYE", id, res, "2", ""))
	waitRemoteHangup(t, l)
}

// discardConn is a PacketConn whose writes go nowhere.
type discardConn struct{ net.PacketConn }

func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

// The read loop's filter (lint, early shedding, the ACK, BYE and INVITE
// transactions taken there) on any datagram: no panic, and whatever it
// takes ends (every INVITE it started is answered and its transaction
// ends when the agent closes).
func FuzzReadLoopFilter(f *testing.F) {
	const head = " sip:echo@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKfz\r\nFrom: <sip:a@b>;tag=1\r\n"
	f.Add([]byte("INVITE" + head + "To: <sip:echo@127.0.0.1>\r\nCall-ID: fz\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("CANCEL" + head + "To: <sip:echo@127.0.0.1>\r\nCall-ID: fz\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("ACK" + head + "To: <sip:echo@127.0.0.1>;tag=x\r\nCall-ID: fz\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK\r\nCall-ID: c\r\nCSeq: x INVITE\r\n\r\n"))
	ports, err := transport.NewPortPool(35200, 35219)
	if err != nil {
		f.Fatal(err)
	}
	a, err := NewAgent(Config{ListenAddr: "127.0.0.1:0", Ports: ports, MediaTimeout: -1,
		Logger:     slog.New(slog.NewTextHandler(&logLines{}, nil)),
		CallLimits: CallLimits{GuestCalls: -1, GuestRate: -1, GuestShare: -1},
		OnInvite:   func(l *Leg) { _ = l.Reject(486, "Busy Here") }})
	if err != nil {
		f.Fatal(err)
	}
	if err := a.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		a.Close()
		if n := a.invites.len(); n != 0 {
			f.Errorf("%d INVITE transactions left after Close", n)
		}
	})
	filter := a.lintFilter(discardConn{})
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = filter(sip.TransportReadProps{Transport: "UDP", RemoteAddr: from}, data)
	})
}
