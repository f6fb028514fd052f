package testharness_test

import (
	"context"
	"errors"
	"net"
	"strconv"
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
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	newPort := conn.LocalAddr().(*net.UDPAddr).Port

	// The new media address: decode what arrives, answer each packet with
	// 20 ms of 600 Hz from the same socket.
	got := make(chan float64, 1)
	go func() {
		tone := media.NewTone(media.Tone{Freqs: []float64{600}, Duration: time.Minute})
		buf := make([]byte, 1500)
		var pcm []int16
		frame := media.NewFrame(8000)
		seq := uint16(1)
		reported := false
		for i := 0; i < 500; i++ {
			_ = conn.SetReadDeadline(time.Now().Add(8 * time.Second))
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) != nil || p.PayloadType != 0 {
				continue
			}
			pcm = media.PCMU{}.Decode(pcm[:0], p.Payload)
			if !reported && len(pcm) == 160 && media.RMS(pcm) > 1000 {
				if fr, _ := media.DominantFrequency(pcm, 8000, 100, 3800, 10); fr > 980 && fr < 1020 {
					got <- fr
					reported = true
				}
			}
			if err := tone.ReadFrame(frame); err != nil {
				return
			}
			out := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: 0x600600},
				Payload: media.PCMU{}.Encode(nil, frame.Samples)}
			seq++
			b, _ := out.Marshal()
			_, _ = conn.WriteToUDP(b, from)
		}
	}()
	out, err := runSIPp(t, "-sf", scenario("reinvite_move.xml"), "-s", "move", "-key", "newport", strconv.Itoa(newPort),
		"-mp", "32300", "-rtp_echo", srv.SIPAddr().String())
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case fr := <-got:
		t.Logf("new media address heard %.0f Hz from the server", fr)
	default:
		t.Fatal("the server's tone never reached the new media address of the re-INVITE")
	}
	if !sawEcho.Load() {
		t.Error("the call flow never heard its tone echoed before the move")
	}
	if !saw600.Load() {
		t.Errorf("the call flow never heard the 600 Hz sent from the new address %d", newPort)
	}
}
