package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// Multi-process tests: each node is the switchboard binary in a process
// of its own, as deployed. The binary is built once per test run.

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// switchboardBinary builds cmd/switchboard (without -race: protoactor's
// remote has data races of its own that would end every node).
func switchboardBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "switchboard-cluster-test")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "switchboard")
		cmd := exec.Command("go", "build", "-o", buildBin, "../cmd/switchboard")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// nodeProc is one switchboard process.
type nodeProc struct {
	name    string
	cmd     *exec.Cmd
	sip     string // host:port (UDP)
	http    string // host:port
	cluster string // remote address
	logPath string
	done    chan struct{}
	exitErr error
}

type nodeSpec struct {
	name        string
	clusterName string
	provider    string // "etcd" or "automanaged"
	etcd        string
	autoPort    int
	autoPeers   []string
	rtpMin      int
	extra       []string
	env         []string // added to the process's environment
	// noSecret runs the node without the tests' cluster secret (relays
	// checked by source address, plain gRPC between nodes).
	noSecret bool
}

// testSecret is the cluster secret test nodes run with (as production
// should), unless their spec says noSecret.
const testSecret = "test-cluster-secret-0123456789"

// startCluster starts etcd and n etcd nodes of a new cluster named after
// prefix, called nodePrefix1..n, with tmpl's extra flags, environment
// and secret choice (each its own RTP range), and waits until every node
// sees all n members with their SIP addresses.
func startCluster(t *testing.T, prefix, nodePrefix string, n int, tmpl nodeSpec, perNode ...func(i int, s *nodeSpec)) []*nodeProc {
	t.Helper()
	bin := switchboardBinary(t)
	ep := startEtcd(t)
	name := fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
	var nodes []*nodeProc
	for i := range n {
		s := tmpl
		s.name, s.clusterName, s.provider, s.etcd, s.rtpMin = fmt.Sprintf("%s%d", nodePrefix, i+1), name, "etcd", ep, 50000+2000*i
		for _, f := range perNode {
			f(i, &s)
		}
		nodes = append(nodes, startNode(t, bin, s))
	}
	for _, nd := range nodes {
		waitFor(t, 20*time.Second, fmt.Sprintf("%s to see %d members with their SIP addresses", nd.name, n), func() bool {
			ms := nd.members(t)
			for _, m := range ms {
				if m.SIP == "" && !m.Self {
					return false
				}
			}
			return len(ms) == n
		})
	}
	return nodes
}

// startNode runs a node and waits until it answers /readyz.
func startNode(t *testing.T, bin string, s nodeSpec) *nodeProc {
	t.Helper()
	p := &nodeProc{name: s.name, sip: "127.0.0.1:" + strconv.Itoa(freeUDPTCP(t)), http: "127.0.0.1:" + strconv.Itoa(freeTCP(t)),
		cluster: "127.0.0.1:" + strconv.Itoa(freeTCP(t)), done: make(chan struct{})}
	args := []string{"serve", "--sip-addr", p.sip, "--http-addr", p.http, "--tls-addr", "-", "--webrtc-addr", "-", "--data-dir", "-",
		"--rtp-ports", fmt.Sprintf("%d-%d", s.rtpMin, s.rtpMin+1999), "--guest-calls", "-1", "--guest-rate", "-1",
		"--cluster", s.clusterName, "--cluster-provider", s.provider, "--cluster-addr", p.cluster, "--node-name", s.name}
	switch s.provider {
	case "etcd":
		args = append(args, "--etcd", s.etcd)
	case "automanaged":
		args = append(args, "--automanaged-port", strconv.Itoa(s.autoPort), "--automanaged-peers", strings.Join(s.autoPeers, ","))
	}
	args = append(args, s.extra...)
	p.logPath = filepath.Join(t.TempDir(), s.name+".log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	env := s.env
	if !s.noSecret {
		env = append(env, "SWITCHBOARD_CLUSTER_SECRET="+testSecret)
	}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.name, err)
	}
	go func() {
		p.exitErr = p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			out, _ := os.ReadFile(p.logPath)
			t.Logf("--- %s log (last 3000 bytes):\n%s", p.name, tailBytes(out, 3000))
		}
	})
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + p.http + "/api/cluster")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(p.logPath)
			t.Fatalf("%s exited: %v\n%s", s.name, p.exitErr, tailBytes(out, 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving /api/cluster in 30 s", s.name)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the node with SIGTERM (SIGKILL after 15 s).
func (p *nodeProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop in 15 s after SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the node with SIGKILL, as a crash would.
func (p *nodeProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// members is what the node's /api/cluster says.
func (p *nodeProc) members(t *testing.T) []Member {
	t.Helper()
	var body struct {
		Members []Member `json:"members"`
	}
	getJSON(t, "http://"+p.http+"/api/cluster", &body)
	return body.Members
}

// calls is the node's GET /api/calls.
func (p *nodeProc) calls(t *testing.T) ([]NodeCall, string) {
	t.Helper()
	var body struct {
		Calls []NodeCall `json:"calls"`
		Error string     `json:"error"`
	}
	getJSON(t, "http://"+p.http+"/api/calls", &body)
	return body.Calls, body.Error
}

// logLines returns the node's log lines containing every one of subs.
func (p *nodeProc) logLines(subs ...string) []string {
	f, err := os.Open(p.logPath)
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

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func httpDelete(t *testing.T, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// usersFile writes a users.toml for --users with the given "name:password"
// accounts and returns its path.
func usersFile(t *testing.T, accounts ...string) string {
	t.Helper()
	var b strings.Builder
	for _, a := range accounts {
		name, pass, _ := strings.Cut(a, ":")
		fmt.Fprintf(&b, "[[users]]\nname = %q\npassword = %q\n\n", name, pass)
	}
	p := filepath.Join(t.TempDir(), "users.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newPhone starts a harness phone with RTP ports in [lo, hi], closed when
// the test ends.
func newPhone(t *testing.T, lo, hi int) *testharness.Phone {
	t.Helper()
	p, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: lo, RTPPortMax: hi, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// callRoom has phone call room-NAME on node n; the call is hung up when
// the test ends.
func callRoom(t *testing.T, ctx context.Context, phone *testharness.Phone, room string, n *nodeProc) *testharness.PhoneCall {
	t.Helper()
	pc, err := phone.Call(ctx, "sip:room-"+room+"@"+n.sip)
	if err != nil {
		t.Fatalf("call room-%s on %s: %v", room, n.name, err)
	}
	t.Cleanup(func() {
		hctx, hcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer hcancel()
		_ = pc.Hangup(hctx)
	})
	return pc
}
