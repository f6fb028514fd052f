package testharness_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// Linphone registers over UDP, TCP and TLS (verifying the development
// certificate), calls the IVR over the same transport, presses 1 as
// RFC 4733 and hears the 1 kHz tone in what it records.
func TestLinphoneRegistersAndCallsIVR(t *testing.T) {
	for _, tr := range []string{"udp", "tcp", "tls"} {
		t.Run(tr, func(t *testing.T) {
			users := sip.NewDirectory(sip.Account{Name: "bob", Password: "b0b-pw"})
			choices := make(chan string, 4)
			digits := make(chan framework.DTMFData, 8)
			ivr := &apps.IVR{Prompts: apps.DemoPrompts(), ToneDuration: 20 * time.Second,
				OnChoice: func(c *framework.Call, d string) { choices <- d }}
			srv := startServer(t, framework.Config{Users: users, TLSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
				OnEvent: func(e framework.Event) {
					if d, ok := e.Data.(framework.DTMFData); ok {
						select {
						case digits <- d:
						default:
						}
					}
				}}, ivr)
			lp := startLinphone(t, srv, linphoneOptions{User: "bob", Password: "b0b-pw", Transport: tr})
			waitRegistered(t, srv, "bob")
			if bs := srv.Agent().Registrar().Lookup("bob"); len(bs) != 1 || !strings.EqualFold(bs[0].Transport, tr) {
				t.Fatalf("bob's bindings %+v, want one over %s", bs, tr)
			}
			addr := srv.SIPAddr()
			if tr == "tls" {
				addr = srv.TLSAddr()
			}
			lp.cmd(t, fmt.Sprintf("call sip:ivr@%s;transport=%s", addr, tr))
			lp.waitState(t, 15*time.Second, "StreamsRunning")
			lp.cmd(t, "play "+lp.file("mic.wav"))
			time.Sleep(time.Second) // into the menu prompt
			lp.cmd(t, "1")
			select {
			case d := <-choices:
				if d != "1" {
					t.Fatalf("the IVR got choice %q, want 1", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the IVR never got Linphone's 1")
			}
			select {
			case d := <-digits:
				if d.Digit != "1" || d.Source != "rfc4733" {
					t.Fatalf("digit %+v, want 1 over RFC 4733", d)
				}
			default:
				t.Fatal("no dtmf event")
			}
			lp.cmd(t, "record "+lp.file("heard.wav"))
			time.Sleep(3 * time.Second)
			lp.cmd(t, "terminate")
			lp.waitState(t, 10*time.Second, "")
			l, err := testharness.LoudestWindow(lp.file("heard.wav"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Linphone heard %.0f Hz at rms %.0f", l.Frequency, l.RMS)
			if l.RMS < 300 || l.Frequency < 980 || l.Frequency > 1020 {
				t.Fatalf("Linphone heard %.0f Hz at rms %.0f over %s, want the IVR's 1000 Hz", l.Frequency, l.RMS, tr)
			}
		})
	}
}
