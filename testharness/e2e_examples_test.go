package testharness_test

import (
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

// runExample builds examples/NAME and runs it with args on a free SIP
// port, returning that address; the process is killed when the test ends.
func runExample(t *testing.T, name string, args ...string) testharness.Addr {
	t.Helper()
	addr, _ := runExampleOut(t, name, args...)
	return addr
}

// runExampleOut is runExample that also returns what the example prints.
func runExampleOut(t *testing.T, name string, args ...string) (testharness.Addr, *logBuffer) {
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
	out := &logBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait until it answers on TCP (the same port as UDP).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return testharness.Addr(netip.MustParseAddrPort(addr)), out
		}
		if time.Now().After(deadline) {
			t.Fatalf("examples/%s does not listen on %s", name, addr)
		}
	}
}

// examples/dropin: red and blue rooms; a digit moves the caller to the
// other room and back.
func TestExampleDropin(t *testing.T) {
	h := testharness.New(t, runExample(t, "dropin"))
	call := func(name string, port int, room string, f float64) *testharness.Call {
		p := h.Phone(testharness.PhoneOptions{RTPPortMin: port, RTPPortMax: port + 999})
		pc := h.Call(room, testharness.HarnessCallOptions{Name: name, Phone: p})
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{f}, Amplitude: 5000}))
		return pc
	}
	a := call("A", 41000, "red", 500)
	b := call("B", 42000, "blue", 900)
	c := call("C", 43000, "red", 1300)
	a.ExpectInMix("A hears C in red", 1300, 0.3)
	a.Press("1")
	a.ExpectInMix("A moved to blue hears B", 900, 0.3)
	b.ExpectInMix("B hears A in blue", 500, 0.3)
	c.ExpectAbsent("C in red still hears A after A moved", 500, 0.05, time.Second)
	a.Press("2")
	a.ExpectInMix("A back in red hears C", 1300, 0.3)
}

// examples/whisper: the supervisor coaches the agent; the customer does
// not hear it.
func TestExampleWhisper(t *testing.T) {
	agent := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	h := testharness.New(t, runExample(t, "whisper", "-agent", agent.URI("agent")))
	h.Own(agent)
	cust := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	callC, callA := callAndAnswer(h, "support", cust, agent, 500, 900)
	callC.Name, callA.Name = "the customer", "the agent"
	callA.ExpectInMix("agent hears customer", 500, 0.5)
	sup := h.Phone(testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	callS := h.Call("coach", testharness.HarnessCallOptions{Name: "the supervisor", Phone: sup})
	callS.Play(audio.NewTone(audio.Tone{Freqs: []float64{1400}, Amplitude: 5000}))
	callA.ExpectInMix("agent hears the supervisor", 1400, 0.15)
	callS.ExpectInMix("supervisor hears the customer", 500, 0.15)
	callC.ExpectAbsent("the customer hears the whisper", 1400, 0.02, 1200*time.Millisecond)
}

// examples/presence: the roster it prints follows registrations and calls.
func TestExamplePresence(t *testing.T) {
	addr, out := runExampleOut(t, "presence")
	h := testharness.New(t, addr)
	status := func(user string) string { // the user's status in the last roster printed
		last := ""
		for _, line := range strings.Split(out.String(), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == user {
				last = f[1]
			}
		}
		return last
	}
	expect := func(user, want string) {
		t.Helper()
		h.Eventually("examples/presence to print "+user+" "+want, func() bool { return status(user) == want })
	}
	alice := h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	h.Register(alice, "", "alice", "secret")
	expect("alice", "available")
	bob := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	h.Register(bob, "", "bob", "secret")
	expect("bob", "available")
	call := h.Call("alice", testharness.HarnessCallOptions{Name: "bob", Phone: bob})
	answered := h.ExpectIncoming(alice, "alice")
	call.ExpectTwoWayAudio(answered, 600, 1200)
	expect("alice", "on-call")
	call.End()
	expect("alice", "available")
}
