package testharness_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// runExample builds examples/NAME and runs it with args on a free SIP
// port, returning that address; the process is killed when the test ends.
func runExample(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build examples/%s: %v\n%s", name, err, out)
	}
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.LocalAddr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"-sip-addr", addr}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until it answers on TCP (the same port as UDP).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("examples/%s does not listen on %s", name, addr)
		}
	}
}

// examples/dropin: red and blue rooms; a digit moves the caller to the
// other room and back.
func TestExampleDropin(t *testing.T) {
	addr := runExample(t, "dropin")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	call := func(port int, room string, f float64) *testharness.PhoneCall {
		p := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: port, RTPPortMax: port + 999})
		pc, err := p.Call(ctx, fmt.Sprintf("sip:%s@%s", room, addr))
		if err != nil {
			t.Fatal(err)
		}
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{f}, Amplitude: 5000}))
		return pc
	}
	a := call(41000, "red", 500)
	b := call(42000, "blue", 900)
	c := call(43000, "red", 1300)
	waitShare(t, a, "A hears C in red", 1300, 0.3)
	if err := a.SendDTMF("1"); err != nil {
		t.Fatal(err)
	}
	waitShare(t, a, "A moved to blue hears B", 900, 0.3)
	waitShare(t, b, "B hears A in blue", 500, 0.3)
	mark := c.Mark()
	time.Sleep(time.Second)
	if share := toneShare(c, mark, 500); share > 0.05 {
		t.Errorf("C in red still hears A after A moved: share %.2f", share)
	}
	if err := a.SendDTMF("2"); err != nil {
		t.Fatal(err)
	}
	waitShare(t, a, "A back in red hears C", 1300, 0.3)
	for _, pc := range []*testharness.PhoneCall{a, b, c} {
		_ = pc.Hangup(ctx)
	}
}

// examples/whisper: the supervisor coaches the agent; the customer does
// not hear it.
func TestExampleWhisper(t *testing.T) {
	agent := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	addr := runExample(t, "whisper", "-agent", agent.URI("agent"))
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cust := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	callC, err := cust.Call(ctx, fmt.Sprintf("sip:support@%s", addr))
	if err != nil {
		t.Fatal(err)
	}
	var callA *testharness.PhoneCall
	select {
	case callA = <-agent.Incoming():
	case <-ctx.Done():
		t.Fatal("the agent was never called")
	}
	callC.Play(audio.NewTone(audio.Tone{Freqs: []float64{500}, Amplitude: 5000}))
	callA.Play(audio.NewTone(audio.Tone{Freqs: []float64{900}, Amplitude: 5000}))
	waitShare(t, callA, "agent hears customer", 500, 0.5)
	sup := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	callS, err := sup.Call(ctx, fmt.Sprintf("sip:coach@%s", addr))
	if err != nil {
		t.Fatal(err)
	}
	callS.Play(audio.NewTone(audio.Tone{Freqs: []float64{1400}, Amplitude: 5000}))
	waitShare(t, callA, "agent hears the supervisor", 1400, 0.15)
	waitShare(t, callS, "supervisor hears the customer", 500, 0.15)
	mark := callC.Mark()
	time.Sleep(1200 * time.Millisecond)
	if share := toneShare(callC, mark, 1400); share > 0.02 {
		t.Errorf("the customer hears the whisper: share %.3f", share)
	}
	for _, pc := range []*testharness.PhoneCall{callC, callA, callS} {
		_ = pc.Hangup(ctx)
	}
}
