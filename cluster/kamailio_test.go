package cluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// kamailioProc is Kamailio running deploy/kamailio/kamailio.cfg in front
// of nodes.
type kamailioProc struct {
	addr    string // udp host:port
	logPath string
}

// startKamailio writes a dispatcher list of the nodes' SIP addresses and
// runs Kamailio on a random loopback port until the test ends.
func startKamailio(t *testing.T, nodes []*nodeProc) *kamailioProc {
	t.Helper()
	bin := testharness.RequireBinary(t, "kamailio", "apt-get install kamailio")
	dir := t.TempDir()
	var list strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&list, "1 sip:%s 0 0\n", n.sip)
	}
	listPath := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := filepath.Abs("../deploy/kamailio/kamailio.cfg")
	if err != nil {
		t.Fatal(err)
	}
	k := &kamailioProc{addr: "127.0.0.1:" + strconv.Itoa(freeUDPTCP(t)), logPath: filepath.Join(dir, "kamailio.log")}
	logf, err := os.Create(k.logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-f", cfg, "-A", `DISPATCHER_LIST="` + listPath + `"`, "-l", "udp:" + k.addr,
		"-DD", "-E", "-Y", dir, "-w", dir, "-m", "64", "-n", "2"}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/kamailio/modules"); err == nil {
		args = append(args, "-L", "/usr/lib/x86_64-linux-gnu/kamailio/modules")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kamailio: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			out, _ := os.ReadFile(k.logPath)
			t.Logf("--- kamailio log (last 3000 bytes):\n%s", tailBytes(out, 3000))
		}
	})
	// Up when it answers an OPTIONS to itself.
	deadline := time.Now().Add(15 * time.Second)
	for !k.pingOK() {
		select {
		case <-done:
			out, _ := os.ReadFile(k.logPath)
			t.Fatalf("kamailio exited:\n%s", tailBytes(out, 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("kamailio does not answer OPTIONS in 15 s")
		}
	}
	return k
}

// pingOK sends one OPTIONS to Kamailio itself and reports a 200.
func (k *kamailioProc) pingOK() bool {
	c, err := net.Dial("udp", k.addr)
	if err != nil {
		return false
	}
	defer c.Close()
	local := c.LocalAddr().String()
	branch := fmt.Sprintf("z9hG4bK-%d", time.Now().UnixNano())
	req := "OPTIONS sip:" + k.addr + " SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=" + branch + "\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@" + local + ">;tag=1\r\nTo: <sip:" + k.addr + ">\r\n" +
		"Call-ID: " + branch + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	return err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200"))
}

// lines returns Kamailio's log lines containing every one of subs.
func (k *kamailioProc) lines(subs ...string) []string {
	f, err := os.Open(k.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// metric sums a node's /metrics samples of name whose labels contain
// every one of labels.
func (p *nodeProc) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatalf("%s /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// runSIPp runs SIPp in dir until it ends; SIPp's exit status is 0 only
// when every call succeeded.
func runSIPp(t *testing.T, dir string, args ...string) ([]byte, error) {
	t.Helper()
	sipp := testharness.RequireBinary(t, "sipp", "apt-get install sip-tester")
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	base := []string{"-i", "127.0.0.1", "-p", "0", "-nostdin", "-timeout", "150s", "-trace_err", "-error_file", filepath.Join(dir, "sipp-err.log")}
	cmd := exec.CommandContext(ctx, sipp, append(base, args...)...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// Three switchboard processes (etcd membership) behind Kamailio: 300 SIPp
// calls to Kamailio's address reach the reflect route, none fails, and
// /metrics shows every node took a share (each share is logged). A
// BYE a node sends itself (DELETE /api/calls on another node) goes back
// through Kamailio (Record-Route honoured), reaching the phone.
func TestKamailioSpreadsSIPpCallsOverThreeNodes(t *testing.T) {
	nodes := startCluster(t, "kam", "k", 3, nodeSpec{})
	k := startKamailio(t, nodes)

	const calls = 300
	dir := t.TempDir()
	start := time.Now()
	scenario, _ := filepath.Abs("testdata/uac_rr.xml")
	out, err := runSIPp(t, dir, "-sf", scenario, "-s", "reflect", "-m", strconv.Itoa(calls), "-r", "30", "-l", "120", "-d", "1000", k.addr)
	elapsed := time.Since(start)
	if err != nil {
		errLog, _ := os.ReadFile(filepath.Join(dir, "sipp-err.log"))
		t.Fatalf("sipp: %v (a call failed)\n%s\n%s", err, tailBytes(out, 2000), tailBytes(errLog, 2000))
	}
	total := 0.0
	for _, n := range nodes {
		n := n
		waitFor(t, 10*time.Second, n.name+" to end its calls", func() bool { return n.metric(t, "switchboard_calls_active") == 0 })
	}
	for _, n := range nodes {
		got := n.metric(t, "switchboard_calls_total", `answered="true"`)
		t.Logf("%s took %.0f of %d calls (%.0f%%)", n.name, got, calls, 100*got/calls)
		if got == 0 {
			t.Errorf("%s took no call", n.name)
		}
		// Every call ended by SIPp's BYE, routed through Kamailio (an
		// ACK or BYE lost on the way would end calls otherwise).
		if bye := n.metric(t, "switchboard_calls_total", `cause="remote_hangup"`); bye != got {
			t.Errorf("%s: %.0f calls ended by the caller's BYE, want %.0f", n.name, bye, got)
		}
		total += got
	}
	if total != calls {
		t.Errorf("the nodes answered %.0f calls, want %d", total, calls)
	}
	t.Logf("%d calls through Kamailio in %s", calls, elapsed.Round(100*time.Millisecond))

	// A node's own BYE goes through Kamailio: a harness phone calls tone
	// through it, n1 hangs the call up wherever it landed.
	phone := newPhone(t, 47000, 47999)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := phone.Call(ctx, "sip:tone@"+k.addr)
	if err != nil {
		t.Fatalf("call through kamailio: %v", err)
	}
	if _, err := pc.WaitTone(ctx, 1000, 10); err != nil {
		t.Fatalf("no tone through kamailio: %v", err)
	}
	if code := httpDelete(t, "http://"+nodes[0].http+"/api/calls/"+pc.Leg.ID()); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d, want 204", code)
	}
	select {
	case <-pc.Leg.Done():
	case <-ctx.Done():
		t.Fatal("the phone got no BYE")
	}
	waitFor(t, 5*time.Second, "kamailio to log the node's BYE", func() bool {
		return len(k.lines("in-dialog BYE", "call_id="+pc.Leg.ID())) > 0
	})
	bye := k.lines("in-dialog BYE", "call_id="+pc.Leg.ID())[0]
	fromNode := false
	for _, n := range nodes {
		if strings.Contains(bye, "from "+n.sip) {
			fromNode = true
		}
	}
	if !fromNode {
		t.Errorf("the BYE kamailio relayed did not come from a node: %s", bye)
	}
}

// sippPhone is SIPp run as alice's phone: a scenario that registers her
// (digest alice/wonderland) at a target and an out-of-call scenario that
// answers the INVITEs reaching her, echoing their RTP.
type sippPhone struct {
	dir  string
	done chan error
	out  []byte // SIPp's output, once done has delivered
}

// startSIPpPhone runs testdata/register (with -oocsf testdata/answer)
// against target in the background; extra goes before the target.
func startSIPpPhone(t *testing.T, register, answer, target string, extra ...string) *sippPhone {
	t.Helper()
	scenario, err := filepath.Abs(filepath.Join("testdata", register))
	if err != nil {
		t.Fatal(err)
	}
	ooc, err := filepath.Abs(filepath.Join("testdata", answer))
	if err != nil {
		t.Fatal(err)
	}
	p := &sippPhone{dir: t.TempDir(), done: make(chan error, 1)}
	mediaPort := strconv.Itoa(testharness.FreePortPair(t, 28000, 29000)) // SIPp's RTP echo
	args := append([]string{"-sf", scenario, "-oocsf", ooc, "-s", "alice", "-au", "alice", "-ap", "wonderland",
		"-m", "1", "-rtp_echo", "-mp", mediaPort}, extra...)
	args = append(args, target)
	go func() {
		out, err := runSIPp(t, p.dir, args...)
		p.out = out
		p.done <- err
	}()
	return p
}

// failure describes how SIPp ended, with its output and error log.
func (p *sippPhone) failure(err error) string {
	errLog, _ := os.ReadFile(filepath.Join(p.dir, "sipp-err.log"))
	return fmt.Sprintf("%v\n%s\n%s", err, tailBytes(p.out, 2000), tailBytes(errLog, 2000))
}

// wait fails the test unless SIPp ends successfully before ctx does.
func (p *sippPhone) wait(t *testing.T, ctx context.Context) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("SIPp (alice's phone): %s", p.failure(err))
		}
	case <-ctx.Done():
		t.Error("SIPp (alice's phone) did not end")
	}
}
