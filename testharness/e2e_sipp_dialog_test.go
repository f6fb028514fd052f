package testharness_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// SIPp cancels while the server rings: 200 to the CANCEL, 487 to the
// INVITE (the scenario checks both), and the call flow ends with ErrHangup.
func TestSIPpCancelBeforeAnswer(t *testing.T) {
	flowErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Ring(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		flowErr <- context.Cause(ctx)
		return nil
	}))
	if out, err := runSIPp(t, "-sf", scenario("uac_cancel.xml"), "-s", "ring", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case err := <-flowErr:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("call flow ctx cause %v, want ErrHangup", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call flow was not ended by the CANCEL")
	}
}

// The call flow hangs up: SIPp (the caller) must receive the BYE.
func TestSIPpServerHangsUp(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, media.Silence(500*time.Millisecond)); err != nil {
			return err
		}
		return c.Hangup(ctx)
	}))
	if out, err := runSIPp(t, "-sf", scenario("uac_server_bye.xml"), "-s", "bye", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
}

// SIPp re-INVITEs with a new media address (a socket this test owns): the
// server's 1 kHz tone must arrive there, and the 600 Hz the test sends back
// from there must reach the call flow (the endpoint re-latches on the
// re-INVITE instead of dropping the new source).
func TestSIPpReinviteMovesMedia(t *testing.T) {
	var sawEcho, saw600 atomic.Bool
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if dsp.RMS(f.Samples) > 1000 {
				fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10)
				switch {
				case fr > 980 && fr < 1020:
					sawEcho.Store(true)
				case fr > 580 && fr < 620:
					saw600.Store(true)
				}
			}
			return nil
		})); err != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: time.Minute}))
	}))
	peer := newRTPPeer(t, 600)
	newPort := peer.Port()
	out, err := runSIPp(t, "-sf", scenario("reinvite_move.xml"), "-s", "move", "-key", "newport", strconv.Itoa(newPort),
		"-mp", "32300", "-rtp_echo", srv.SIPAddr().String())
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	if fr := peer.Heard(); fr < 980 || fr > 1020 {
		t.Fatalf("the new media address of the re-INVITE heard %.0f Hz, want the server's 1 kHz", fr)
	}
	if !sawEcho.Load() {
		t.Error("the call flow never heard its tone echoed before the move")
	}
	if !saw600.Load() {
		t.Errorf("the call flow never heard the 600 Hz sent from the new address %d", newPort)
	}
}

// rtpPeer is a bare RTP socket standing in for a far end's media address:
// it remembers the dominant frequency of the loudest PCMU packet it
// received and answers every packet with 20 ms of replyHz.
type rtpPeer struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	bestRMS float64
	heardHz float64
	packets atomic.Int64
}

func newRTPPeer(t *testing.T, replyHz float64) *rtpPeer {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &rtpPeer{conn: conn}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		tone := audio.NewTone(audio.Tone{Freqs: []float64{replyHz}, Duration: time.Minute})
		frame := media.NewFrame(8000)
		buf := make([]byte, 1500)
		var pcm []int16
		for seq := uint16(1); seq < 3000; seq++ {
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var pk rtp.Packet
			if pk.Unmarshal(buf[:n]) != nil || pk.PayloadType != 0 {
				continue
			}
			p.packets.Add(1)
			pcm = codec.PCMU{}.Decode(pcm[:0], pk.Payload)
			if rms := dsp.RMS(pcm); len(pcm) == 160 && rms > 1000 {
				fr, _ := dsp.DominantFrequency(pcm, 8000, 100, 3800, 10)
				p.mu.Lock()
				if rms > p.bestRMS {
					p.bestRMS, p.heardHz = rms, fr
				}
				p.mu.Unlock()
			}
			if tone.ReadFrame(frame) != nil {
				return
			}
			out := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: uint32(replyHz)},
				Payload: codec.PCMU{}.Encode(nil, frame.Samples)}
			b, _ := out.Marshal()
			_, _ = conn.WriteToUDP(b, from)
		}
	}()
	return p
}

func (p *rtpPeer) Port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// Heard is the frequency of the loudest packet received so far (0: none).
func (p *rtpPeer) Heard() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.heardHz
}

// A carrier sends 183 with SDP for one media address, then 200 with SDP
// for another: after the answer our audio must go to the 200's address
// and the call flow must hear what comes from there.
func TestSIPp183Then200WithDifferentSDP(t *testing.T) {
	early, answer := newRTPPeer(t, 500), newRTPPeer(t, 600)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "uas_183_then_200.xml", "-key", "early", strconv.Itoa(early.Port()), "-key", "answer", strconv.Itoa(answer.Port()))
	var heard600 atomic.Bool
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return nil }))
	uas.originate(t, ctx, srv, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		_ = c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); dsp.RMS(f.Samples) > 1000 && fr > 580 && fr < 620 {
				heard600.Store(true)
			}
			return nil
		}))
		_ = c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 1500 * time.Millisecond}))
		return c.Hangup(ctx)
	}))
	uas.wait(t, ctx)
	if fr := answer.Heard(); fr < 980 || fr > 1020 {
		t.Fatalf("the 200's media address heard %.0f Hz, want the flow's 1 kHz", fr)
	}
	if fr := early.Heard(); fr != 0 {
		t.Errorf("the 183's media address heard %.0f Hz after the answer; media did not follow the 200", fr)
	}
	if !heard600.Load() {
		t.Error("the flow never heard the 600 Hz from the 200's media address")
	}
}

// SIPp hangs up while its own re-INVITE is pending (2xx not ACKed): the
// BYE is answered and the call ends at once; the retransmissions of our
// 2xx stop.
func TestSIPpByeDuringPendingReinvite(t *testing.T) {
	ended := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Play(ctx, media.Silence(time.Minute))
		ended <- err
		return err
	}))
	if out, err := runSIPp(t, "-sf", scenario("reinvite_pending_bye.xml"), "-s", "pend", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case err := <-ended:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("Play returned %v, want ErrHangup", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the call did not end on the BYE")
	}
	testharness.WaitUntil(t, 3*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })
}

// Our hold re-INVITE is pending when SIPp (the far end) hangs up: Hold
// returns at once with ErrHangup instead of waiting 32 s for Timer B.
func TestSIPpByeWhileOurReinvitePending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// The framework verb: Hold returns ErrHangup when the call ends.
	uas := startSIPpUAS(t, ctx, "uas_bye_during_reinvite.xml")
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return nil }))
	holdErr := make(chan error, 1)
	uas.originate(t, ctx, srv, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		err := c.Hold(ctx)
		holdErr <- err
		return err
	}))
	uas.wait(t, ctx)
	select {
	case err := <-holdErr:
		if !errors.Is(err, framework.ErrHangup) {
			t.Fatalf("Hold returned %v, want ErrHangup", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not return after the far end hung up")
	}
	testharness.WaitUntil(t, 3*time.Second, "call to end", func() bool { return srv.ActiveCalls() == 0 })

	// The SIP layer itself: the leg's re-INVITE is abandoned when the BYE
	// ends the dialog, instead of waiting 32 s for Timer B.
	uas = startSIPpUAS(t, ctx, "uas_bye_during_reinvite.xml")
	ph := newPhone(t)
	var call *testharness.PhoneCall
	var err error
	for range 50 {
		if call, err = ph.Call(ctx, uas.uri("bob")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("call to SIPp: %v", err)
	}
	start := time.Now()
	err = call.Leg.Hold(ctx)
	if !errors.Is(err, sip.ErrRemoteHangup) {
		t.Fatalf("Leg.Hold returned %v, want ErrRemoteHangup", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Leg.Hold took %s: it waited for the transaction to time out", d)
	}
	uas.wait(t, ctx)
}

// sippUAS runs SIPp as a UAS with scenario name on a free port; wait
// returns SIPp's exit error (with its output) once it is done.
type sippUAS struct {
	port int
	dir  string // its working directory (-trace_counts files)
	out  testharness.LockedBuffer
	done chan error
}

// startSIPpUAS runs SIPp as a UAS for one call on a free port: name is a
// scenario file in testdata/sipp (".xml") or one of SIPp's own ("uas").
func startSIPpUAS(t *testing.T, ctx context.Context, name string, args ...string) *sippUAS {
	t.Helper()
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	u := &sippUAS{port: freeUDPPort(t), dir: t.TempDir(), done: make(chan error, 1)}
	sc := []string{"-sn", name}
	if strings.HasSuffix(name, ".xml") {
		sc = []string{"-sf", scenario(name)}
	}
	base := append(sc, "-i", "127.0.0.1", "-p", strconv.Itoa(u.port), "-m", "1", "-timeout", "30s", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(u.dir, "err.log"))
	cmd := exec.CommandContext(ctx, sipp, append(base, args...)...)
	cmd.Dir = u.dir
	cmd.Stdout, cmd.Stderr = &u.out, &u.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { u.done <- cmd.Wait() }()
	testharness.WaitUDPBound(t, u.port, 10*time.Second)
	return u
}

func (u *sippUAS) uri(user string) string {
	return "sip:" + user + "@127.0.0.1:" + strconv.Itoa(u.port)
}

// wait fails the test unless SIPp finishes its scenario successfully.
func (u *sippUAS) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case err := <-u.done:
		if err != nil {
			t.Fatalf("sipp: %v\n%s", err, tail(u.out.Bytes(), 3000))
		}
	case <-ctx.Done():
		t.Fatalf("sipp did not finish\n%s", tail(u.out.Bytes(), 3000))
	}
}

// originate places a call from srv to the SIPp UAS, retrying while SIPp
// binds its port.
func (u *sippUAS) originate(t *testing.T, ctx context.Context, srv *framework.Server, flow framework.Handler) {
	t.Helper()
	var err error
	for range 50 {
		if err = srv.Originate(ctx, u.uri("bob"), framework.DialOptions{Timeout: 5 * time.Second}, flow); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("originate: %v\n%s", err, tail(u.out.Bytes(), 2000))
}

// A caller asking for 40 ms packets gets them (a=ptime:40 in the answer),
// and the server decodes the 40 ms packets SIPp echoes back.
func TestSIPpPTime40(t *testing.T) {
	heard := make(chan bool, 1)
	srv := startServer(t, framework.Config{}, toneEchoHandler(heard))
	if out, err := runSIPp(t, "-sf", scenario("uac_ptime40.xml"), "-s", "ptime", "-mp", "32500", "-rtp_echo", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case <-heard:
	case <-time.After(3 * time.Second):
		t.Fatal("the server never heard its tone in SIPp's echo of 40 ms packets")
	}
}
