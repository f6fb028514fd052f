package testharness_test

import (
	"fmt"
	"net"
	"path/filepath"
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
			case <-time.After(time.Second):
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

// Linphone registered over TLS is called through the server: baresip
// (alice, over UDP) dials "bob", the demo's Extensions route Dials bob's
// registration over the connection Linphone registered on, Linphone
// answers, each hears the other's tone, and either side hangs up with the
// CDR's duration within 1 s of the call's real length. (With a Via naming
// the UDP/TCP port, Linphone sent its 200 to a new TLS connection to that
// port, the handshake failed, and the caller got 480 after 30 s; its BYE's
// 200 was lost the same way and the leg lingered until the media timeout.)
func TestLinphoneCalledOverTLSFromBaresip(t *testing.T) {
	for _, hangup := range []string{"linphone", "baresip"} {
		t.Run(hangup+" hangs up", func(t *testing.T) {
			users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"}, sip.Account{Name: "bob", Password: "b0b-pw"})
			cdrs := make(chan framework.CDR, 2)
			srv := startServer(t, framework.Config{Users: users, TLSAddr: "127.0.0.1:0", DataDir: t.TempDir(),
				OnCallEnd: func(c framework.CDR) { cdrs <- c }}, apps.Extensions(users, apps.Tone(1000)))
			lp := startLinphone(t, srv, linphoneOptions{User: "bob", Password: "b0b-pw", Transport: "tls"})
			waitRegistered(t, srv, "bob")
			if bs := srv.Agent().Registrar().Lookup("bob"); len(bs) != 1 || !strings.EqualFold(bs[0].Transport, "TLS") {
				t.Fatalf("bob's bindings %+v, want one over TLS", bs)
			}
			// baresip hangs up when told to over its ctrl_tcp socket.
			ctrlPort := freeTCPPort(t)
			b := startBaresipOpts(t, srv, baresipOptions{extraConfig: fmt.Sprintf("module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:%d", ctrlPort)},
				600, 30, "/dial sip:bob@"+srv.SIPAddr().String())
			lp.waitState(t, 15*time.Second, "StreamsRunning")
			answered := time.Now()
			lp.cmd(t, "play "+lp.file("mic.wav"))
			lp.cmd(t, "record "+lp.file("heard.wav"))
			time.Sleep(4 * time.Second)
			hungUp := time.Now()
			if hangup == "linphone" {
				lp.cmd(t, "terminate")
			} else {
				baresipCommand(t, ctrlPort, "hangup", "")
			}
			var cdr framework.CDR
			select {
			case cdr = <-cdrs:
			case <-time.After(10 * time.Second):
				t.Fatal("no CDR within 10 s of the hangup")
			}
			lasted := hungUp.Sub(answered)
			t.Logf("CDR duration %s (cause %q), call lasted %s", cdr.Duration, cdr.Cause, lasted)
			if d := cdr.Duration - lasted; d > time.Second || d < -time.Second {
				t.Errorf("CDR duration %s, call lasted %s", cdr.Duration, lasted)
			}
			if late := cdr.End.Sub(hungUp); late > time.Second {
				t.Errorf("the call ended %s after the hangup", late)
			}
			lp.waitState(t, 5*time.Second, "") // Linphone saw the call end too
			heard, err := testharness.LoudestWindow(lp.file("heard.wav"), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Linphone heard %.0f Hz at rms %.0f", heard.Frequency, heard.RMS)
			if heard.RMS < 300 || heard.Frequency < 585 || heard.Frequency > 615 {
				t.Errorf("Linphone heard %.0f Hz at rms %.0f, want baresip's 600 Hz", heard.Frequency, heard.RMS)
			}
			fromBaresip := baresipRecording(t, b)
			t.Logf("baresip heard %.0f Hz at rms %.0f", fromBaresip.Frequency, fromBaresip.RMS)
			if fromBaresip.RMS < 300 || fromBaresip.Frequency < 430 || fromBaresip.Frequency > 450 {
				t.Errorf("baresip heard %.0f Hz at rms %.0f, want Linphone's 440 Hz", fromBaresip.Frequency, fromBaresip.RMS)
			}
		})
	}
}

// baresipRecording measures what baresip recorded of a call that has
// ended while baresip keeps running (it closes the file at the call's end).
func baresipRecording(t *testing.T, b *baresip) testharness.Listen {
	t.Helper()
	var l testharness.Listen
	testharness.WaitUntil(t, 5*time.Second, "baresip's recording", func() bool {
		files, _ := filepath.Glob(filepath.Join(b.rec, "*-dec.wav"))
		if len(files) == 0 {
			return false
		}
		got, err := testharness.LoudestWindow(files[0], time.Second)
		l = got
		return err == nil && got.RMS > 0
	})
	return l
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// baresipCommand sends one command (with params, "" for none) to
// baresip's ctrl_tcp module (a JSON netstring) and waits for its response.
func baresipCommand(t *testing.T, port int, command, params string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("baresip ctrl_tcp: %v", err)
	}
	defer conn.Close()
	msg := fmt.Sprintf(`{"command":%q,"params":%q,"token":"t1"}`, command, params)
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(msg), msg); err != nil {
		t.Fatalf("baresip ctrl_tcp: %v", err)
	}
	// Events (CALL_CLOSED, ...) may come before the response.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), `"response":true`) {
		n, err := conn.Read(buf)
		if err != nil || len(got) > 1<<16 {
			t.Fatalf("baresip ctrl_tcp %s: no response in %q: %v", command, got, err)
		}
		got = append(got, buf[:n]...)
	}
	if !strings.Contains(string(got), `"ok":true`) {
		t.Fatalf("baresip ctrl_tcp %s failed: %q", command, got)
	}
}
