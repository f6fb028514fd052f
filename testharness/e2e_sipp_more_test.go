package testharness_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// toneEchoHandler plays a 1 kHz tone and reports the loudest 1 kHz-dominated
// frame it hears back (SIPp's -rtp_echo returns our own audio).
func toneEchoHandler(heard chan<- bool) framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		var once sync.Once
		if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if dsp.RMS(f.Samples) > 1000 {
				if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); fr > 980 && fr < 1020 {
					once.Do(func() { heard <- true })
				}
			}
			return nil
		})); err != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: time.Minute}))
	})
}

// Late offer (SDP answer in the ACK), an empty re-INVITE (the server offers
// again), a hold answered recvonly and an unhold answered sendrecv,
// against SIPp with RTP echo.
func TestSIPpLateOfferEmptyReinviteHold(t *testing.T) {
	heard := make(chan bool, 1)
	srv := startServer(t, framework.Config{}, toneEchoHandler(heard))
	out, err := runSIPp(t, "-sf", scenario("late_offer.xml"), "-s", "late", "-mp", "32100", "-rtp_echo", srv.SIPAddr().String())
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never heard its tone echoed: media was not set up from the ACK's answer")
	}
}

// The server dials out: Originate calls a SIPp UAS (with RTP echo), the
// flow plays a tone and hears it come back, then hangs up (BYE from our
// side); SIPp exits 0 only if the whole dialog went as its scenario says.
func TestOriginateToSIPpUAS(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Reject(ctx, 404)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "uas", "-mp", "32200", "-rtp_echo")
	heard, echoed := make(chan bool, 1), make(chan bool, 1)
	flow := framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		var once sync.Once
		_ = c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); dsp.RMS(f.Samples) > 1000 && fr > 980 && fr < 1020 {
				once.Do(func() { heard <- true })
			}
			return nil
		}))
		playCtx, stop := context.WithCancel(ctx)
		go func() {
			select {
			case <-heard:
				echoed <- true
			case <-time.After(5 * time.Second):
				echoed <- false
			}
			stop()
		}()
		_ = c.Play(playCtx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 10 * time.Second}))
		return c.Hangup(ctx)
	})
	uas.originate(t, ctx, srv, flow)
	uas.wait(t, ctx)
	if !<-echoed {
		t.Fatal("the flow never heard its tone echoed back by SIPp")
	}
	testharness.New(t, srv).ExpectIdle()
}

// INFO DTMF reaches CollectDigits, a MESSAGE from the caller arrives as a
// chat event, and the flow's SendMessage reaches SIPp, inside the dialog.
func TestSIPpInfoDTMFAndChat(t *testing.T) {
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		events := c.Events()
		d, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 1, FirstDigitTimeout: 10 * time.Second})
		if err != nil {
			return err
		}
		for ev := range events {
			if ev.Type == framework.EventChat {
				text := ev.Data.(framework.ChatData).Text
				if err := c.SendMessage(ctx, "got "+d+" and "+text); err != nil {
					return err
				}
				break
			}
		}
		<-ctx.Done()
		return nil
	}))
	if out, err := runSIPp(t, "-sf", scenario("info_message.xml"), "-s", "chat", "-mp", "32300", srv.SIPAddr().String()); err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
}
