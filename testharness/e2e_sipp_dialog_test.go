package testharness_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
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
			if media.RMS(f.Samples) > 1000 {
				fr, _ := media.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10)
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
		return c.Play(ctx, media.NewTone(media.Tone{Freqs: []float64{1000}, Duration: time.Minute}))
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
		tone := media.NewTone(media.Tone{Freqs: []float64{replyHz}, Duration: time.Minute})
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
			pcm = media.PCMU{}.Decode(pcm[:0], pk.Payload)
			if rms := media.RMS(pcm); len(pcm) == 160 && rms > 1000 {
				fr, _ := media.DominantFrequency(pcm, 8000, 100, 3800, 10)
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
				Payload: media.PCMU{}.Encode(nil, frame.Samples)}
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
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	early, answer := newRTPPeer(t, 500), newRTPPeer(t, 600)
	port := freeUDPPort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sipp, "-sf", scenario("uas_183_then_200.xml"),
		"-key", "early", strconv.Itoa(early.Port()), "-key", "answer", strconv.Itoa(answer.Port()),
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-m", "1", "-timeout", "30s", "-nostdin",
		"-trace_err", "-error_file", filepath.Join(t.TempDir(), "err.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var heard600 atomic.Bool
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return nil
	}))
	flow := framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		_ = c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if fr, _ := media.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); media.RMS(f.Samples) > 1000 && fr > 580 && fr < 620 {
				heard600.Store(true)
			}
			return nil
		}))
		_ = c.Play(ctx, media.NewTone(media.Tone{Freqs: []float64{1000}, Duration: 1500 * time.Millisecond}))
		return c.Hangup(ctx)
	})
	var err error
	for range 50 {
		if err = srv.Originate(ctx, "sip:carrier@127.0.0.1:"+strconv.Itoa(port), framework.DialOptions{Timeout: 5 * time.Second}, flow); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("originate: %v\n%s", err, tail(out.Bytes(), 2000))
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sipp: %v\n%s", err, tail(out.Bytes(), 3000))
		}
	case <-ctx.Done():
		t.Fatal("sipp did not finish")
	}
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
