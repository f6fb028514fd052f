package testharness_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// metricsSnapshot is one scrape of /metrics: sample → value, keyed by
// name and labels as the text format writes them.
type metricsSnapshot map[string]float64

func scrape(t *testing.T, srv *framework.Server) metricsSnapshot {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+srv.HTTPAddr()+"/metrics", nil)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	req.Close = true // no idle keep-alive connection outlives the test
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("scrape: status %d", res.StatusCode)
	}
	snap := metricsSnapshot{}
	sc := bufio.NewScanner(io.LimitReader(res.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: bad line %q", line)
		}
		snap[line[:i]] = v
	}
	return snap
}

// sum adds every sample of metric name whose labels include all of want
// (each `key="value"`).
func (m metricsSnapshot) sum(name string, want ...string) float64 {
	total := 0.0
	for k, v := range m {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(labels, w) {
				ok = false
			}
		}
		if ok {
			total += v
		}
	}
	return total
}

// sippCounts reads the last line of the -trace_counts file SIPp wrote in
// dir: column name → count.
func sippCounts(t *testing.T, dir string) (names []string, counts map[string]int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*_counts.csv"))
	if len(files) != 1 {
		t.Fatalf("want one SIPp counts file in %s, found %v", dir, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		t.Fatalf("SIPp counts file has no data:\n%s", b)
	}
	names = strings.Split(lines[0], ";")
	vals := strings.Split(lines[len(lines)-1], ";")
	counts = map[string]int{}
	for i, n := range names {
		if i < len(vals) && n != "" {
			counts[n], _ = strconv.Atoi(vals[i])
		}
	}
	return names, counts
}

// sippMessage sums the counters of the k-th (0-based) scenario step whose
// name matches pattern, e.g. `^\d+_200_` for the 200s; kinds are column
// suffixes such as "Recv", "Retrans", "Sent".
func sippMessage(names []string, counts map[string]int, pattern string, k int, kinds ...string) int {
	re := regexp.MustCompile(pattern)
	var steps []string
	for _, n := range names {
		if re.MatchString(n) {
			step, _, _ := strings.Cut(n, "_")
			if len(steps) == 0 || steps[len(steps)-1] != step {
				steps = append(steps, step)
			}
		}
	}
	if k >= len(steps) {
		return -1
	}
	total := 0
	for _, n := range names {
		if !re.MatchString(n) || !strings.HasPrefix(n, steps[k]+"_") {
			continue
		}
		for _, kind := range kinds {
			if strings.HasSuffix(n, "_"+kind) {
				total += counts[n]
			}
		}
	}
	return total
}

// metricCheck compares one /metrics sample with what SIPp's counters or
// the CDRs say it must be.
type metricCheck struct {
	what string
	got  float64
	want int
}

// expectMetrics fails the test for every check whose /metrics value is
// not what SIPp or the CDRs counted (want < 0: SIPp's counts lack the
// step), logging them all, and SIPp's counts when any failed.
func expectMetrics(t *testing.T, checks []metricCheck, counts map[string]int) {
	t.Helper()
	for _, c := range checks {
		t.Logf("%s: /metrics %v, SIPp or CDRs %d", c.what, c.got, c.want)
		if c.want < 0 || c.got != float64(c.want) {
			t.Errorf("%s: /metrics says %v, SIPp or the CDRs say %d", c.what, c.got, c.want)
		}
	}
	if t.Failed() {
		t.Logf("SIPp counts: %v", counts)
	}
}

// runSIPpLoad runs SIPp to completion in dir (where -trace_counts writes)
// while scrape is called every 50 ms; it returns SIPp's output and error.
func runSIPpLoad(t *testing.T, dir string, during func(), args ...string) ([]byte, error) {
	t.Helper()
	sipp := requireBinary(t, "sipp", "apt-get install sip-tester")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"-i", "127.0.0.1", "-p", "0", "-timeout", "60s", "-nostdin", "-trace_counts",
		"-trace_err", "-error_file", filepath.Join(dir, "err.log")}
	cmd := exec.CommandContext(ctx, sipp, append(base, args...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return out.Bytes(), err
		case <-tick.C:
			if during != nil {
				during()
			}
		}
	}
}

// 50 SIPp calls: /metrics, scraped during and after the run, counts
// exactly the calls SIPp made (by cause), their setup times, the SIP
// messages SIPp's own counters say it sent and received, and the media
// statistics of the calls' CDRs (SIPp echoes our RTP).
func TestSIPpCallCountersInMetrics(t *testing.T) {
	const calls = 50
	var mu sync.Mutex
	var cdrIn, cdrOut, cdrLost, withRTP, withMOS int
	onEnd := func(cdr framework.CDR) {
		mu.Lock()
		defer mu.Unlock()
		cdrIn += int(cdr.Media.PacketsIn)
		cdrOut += int(cdr.Media.PacketsOut)
		cdrLost += int(cdr.Media.Lost)
		if cdr.Media.PacketsIn > 0 {
			withRTP++
		}
		if cdr.Media.MOS > 0 {
			withMOS++
		}
	}
	// SIPp calls from one address: lift the per-source limits
	// (docs/security.md), which TestSourceLimitRefusalsCounted covers.
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", RTPPortMin: 30000, RTPPortMax: 30399, OnCallEnd: onEnd,
		CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1}},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
			if err := c.Answer(ctx); err != nil {
				return err
			}
			<-ctx.Done() // SIPp hangs up
			return nil
		}))
	dir := t.TempDir()
	maxActive := 0.0
	out, err := runSIPpLoad(t, dir, func() {
		if a := scrape(t, srv).sum("switchboard_calls_active"); a > maxActive {
			maxActive = a
		}
	}, "-sn", "uac", "-s", "metrics", "-m", strconv.Itoa(calls), "-r", "25", "-l", "25", "-d", "600", "-mp", "32400", "-rtp_echo",
		srv.SIPAddr().String())
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	testharness.WaitUntil(t, 5*time.Second, "calls to end", func() bool { return srv.ActiveCalls() == 0 })
	m := scrape(t, srv)
	if maxActive < 1 {
		t.Errorf("switchboard_calls_active never above 0 while SIPp ran")
	}
	if got := m.sum("switchboard_calls_active"); got != 0 {
		t.Errorf("switchboard_calls_active = %v after the run", got)
	}
	checks := []metricCheck{
		{"calls_total (all causes)", m.sum("switchboard_calls_total"), calls},
		{"calls_total remote_hangup answered", m.sum("switchboard_calls_total", `cause="remote_hangup"`, `answered="true"`), calls},
		{"calls_started inbound", m.sum("switchboard_calls_started_total", `direction="inbound"`), calls},
		{"call_setup_seconds_count", m.sum("switchboard_call_setup_seconds_count"), calls},
		{"invites rejected", m.sum("switchboard_invites_rejected_total"), 0},
	}
	mu.Lock()
	if withRTP == 0 {
		t.Error("no call received RTP: SIPp's echo did not work, the media metrics prove nothing")
	}
	checks = append(checks, []metricCheck{
		{"RTP packets in (CDRs)", m.sum("switchboard_rtp_packets_total", `direction="in"`), cdrIn},
		{"RTP packets out (CDRs)", m.sum("switchboard_rtp_packets_total", `direction="out"`), cdrOut},
		{"RTP packets lost (CDRs)", m.sum("switchboard_rtp_packets_lost_total"), cdrLost},
		{"jitter observations (calls with RTP)", m.sum("switchboard_call_jitter_seconds_count"), withRTP},
		{"loss observations (calls with RTP)", m.sum("switchboard_call_loss_ratio_count"), withRTP},
		{"MOS observations (calls with a MOS)", m.sum("switchboard_call_mos_count"), withMOS},
	}...)
	mu.Unlock()
	names, counts := sippCounts(t, dir)
	msgs := []struct {
		what  string
		got   float64
		step  string
		k     int
		kinds []string
	}{
		{"INVITEs in", m.sum("switchboard_sip_requests_total", `direction="in"`, `method="INVITE"`), `^\d+_INVITE_`, 0, []string{"Sent", "Retrans"}},
		{"ACKs in", m.sum("switchboard_sip_requests_total", `direction="in"`, `method="ACK"`), `^\d+_ACK_`, 0, []string{"Sent", "Retrans"}},
		{"BYEs in", m.sum("switchboard_sip_requests_total", `direction="in"`, `method="BYE"`), `^\d+_BYE_`, 0, []string{"Sent", "Retrans"}},
		{"2xx to INVITE out", m.sum("switchboard_sip_responses_total", `direction="out"`, `method="INVITE"`, `class="2xx"`), `^\d+_200_`, 0, []string{"Recv", "Retrans"}},
		{"2xx to BYE out", m.sum("switchboard_sip_responses_total", `direction="out"`, `method="BYE"`, `class="2xx"`), `^\d+_200_`, 1, []string{"Recv", "Retrans"}},
	}
	for _, c := range msgs {
		checks = append(checks, metricCheck{c.what, c.got, sippMessage(names, counts, c.step, c.k, c.kinds...)})
	}
	// Every call here is plain (SDP offer in the INVITE, UDP, answered,
	// ACKed, hung up by the caller): its INVITE, first ACK and BYE are
	// taken in the read loop; a retransmission is not counted there.
	checks = append(checks,
		metricCheck{"INVITEs taken in the read loop", m.sum("switchboard_sip_read_loop_requests_total", `method="INVITE"`), calls},
		metricCheck{"ACKs taken in the read loop", m.sum("switchboard_sip_read_loop_requests_total", `method="ACK"`), calls},
		metricCheck{"BYEs taken in the read loop", m.sum("switchboard_sip_read_loop_requests_total", `method="BYE"`), calls},
		// At 25 calls/s nothing waits in the SIP socket for long, and the
		// kernel drops nothing (the socket reports it, Linux).
		metricCheck{"SIP datagrams dropped by the kernel", m.sum("switchboard_sip_read_drops_total"), 0})
	if _, ok := m["switchboard_sip_read_drops_total"]; !ok {
		t.Error("switchboard_sip_read_drops_total not in /metrics")
	}
	if d, ok := m["switchboard_sip_read_delay_seconds"]; !ok || d > 0.05 {
		t.Errorf("switchboard_sip_read_delay_seconds %v (present %v) after a 25 calls/s run, want under 0.05", d, ok)
	}
	expectMetrics(t, checks, counts)
}

// With at most 2 calls being set up, a burst of 12 calls whose flow
// answers after 1 s: the excess INVITEs get 503 with Retry-After (SIPp's
// scenario checks the header), the accepted ones are answered and hung
// up normally, and /metrics counts exactly SIPp's 503s and answered
// calls. A call that was up before the burst hears its tone throughout.
func TestSIPpOverload503RetryAfter(t *testing.T) {
	const calls = 12
	var flows atomic.Int32
	router := framework.NewRouter()
	router.Handle("tone", apps.Tone(1000))
	router.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil
		}
		if err := c.Answer(ctx); err != nil {
			return err
		}
		flows.Add(1)
		<-ctx.Done()
		return nil
	}))
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", Overload: sip.OverloadOptions{MaxPendingInvites: 2, RetryAfter: 7 * time.Second},
		CallLimits: sip.CallLimits{GuestCalls: -1, GuestRate: -1}}, router)
	h := testharness.New(t, srv)
	up := h.Call("tone", testharness.HarnessCallOptions{Name: "the call up"})
	up.ExpectTone(1000)
	mark := up.Mark()

	dir := t.TempDir()
	maxPending := 0.0
	out, err := runSIPpLoad(t, dir, func() {
		if p := scrape(t, srv).sum("switchboard_sip_invites_pending"); p > maxPending {
			maxPending = p
		}
	}, "-sf", scenario("uac_overload.xml"), "-s", "overload", "-m", strconv.Itoa(calls), "-r", "10", "-l", strconv.Itoa(calls), "-mp", "32500",
		srv.SIPAddr().String())
	if err != nil {
		errLog, _ := os.ReadFile(filepath.Join(dir, "err.log"))
		t.Fatalf("sipp (a 503 without Retry-After: 7 fails its call): %v\n%s\nerrors:\n%s", err, tail(out, 3000), tail(errLog, 2000))
	}
	heard, rate := up.Heard(mark)
	testharness.WaitUntil(t, 5*time.Second, "SIPp's calls to end", func() bool { return srv.ActiveCalls() == 1 })
	names, counts := sippCounts(t, dir)
	refused := sippMessage(names, counts, `^\d+_503_`, 0, "Recv")
	answered := sippMessage(names, counts, `^\d+_200_`, 0, "Recv")
	if refused < 1 || answered < 1 || refused+answered != calls {
		t.Fatalf("SIPp saw %d refused and %d answered of %d calls; want both, adding up\ncounts: %v", refused, answered, calls, counts)
	}
	t.Logf("SIPp: %d calls refused with 503, %d answered; pending INVITEs peaked at %v", refused, answered, maxPending)
	m := scrape(t, srv)
	if got := m.sum("switchboard_invites_rejected_total", `reason="pending_invites"`); got != float64(refused) {
		t.Errorf("invites_rejected_total{reason=pending_invites} = %v, SIPp got %d 503s", got, refused)
	}
	if got := m.sum("switchboard_sip_responses_total", `direction="out"`, `method="INVITE"`, `class="5xx"`); got < float64(refused) {
		t.Errorf("5xx to INVITE sent = %v, want at least %d", got, refused)
	}
	if got := m.sum("switchboard_calls_total", `cause="remote_hangup"`, `answered="true"`); got != float64(answered) {
		t.Errorf("calls_total answered and hung up by SIPp = %v, want %d", got, answered)
	}
	if got := int(flows.Load()); got != answered {
		t.Errorf("%d flows answered, SIPp saw %d 200s", got, answered)
	}
	if maxPending > 2 {
		t.Errorf("switchboard_sip_invites_pending reached %v with a limit of 2", maxPending)
	}
	// The call that was up kept its audio: every 20 ms frame heard during
	// the burst is the 1 kHz tone at full level (a few allowed for a
	// loaded machine).
	frame := rate / 50
	if rate == 0 || len(heard) < 50*frame {
		t.Fatalf("the call up during the burst heard only %d samples", len(heard))
	}
	good, total := 0, 0
	for i := 0; i+frame <= len(heard); i += frame {
		f := heard[i : i+frame]
		total++
		if fr, _ := dsp.DominantFrequency(f, rate, 100, 3800, 10); dsp.RMS(f) > 1000 && fr > 950 && fr < 1050 {
			good++
		}
	}
	if good < total*97/100 {
		t.Errorf("the call up during the burst heard the tone in %d of %d frames", good, total)
	}
	t.Logf("call up during the burst: tone in %d of %d frames", good, total)
}

// With PacerOverrunHold set, a pacer tick that overruns (a flow whose
// source takes 30 ms per 20 ms frame) refuses new calls with 503 +
// Retry-After for the hold, counted as pacer_overrun; afterwards calls
// are let in again.
func TestPacerOverrunRefusesNewCalls(t *testing.T) {
	router := framework.NewRouter()
	router.HandleFunc("slow", func(ctx context.Context, c *framework.Call) error {
		n := 0
		return c.Play(ctx, media.SourceFunc(func(f *media.Frame) error {
			if n++; n > 25 {
				return io.EOF
			}
			time.Sleep(30 * time.Millisecond)
			clear(f.Samples)
			return nil
		}))
	})
	router.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return c.Reject(ctx, 486) }))
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", Overload: sip.OverloadOptions{PacerOverrunHold: time.Second}}, router)
	h := testharness.New(t, srv)
	h.Call("slow", testharness.HarnessCallOptions{})
	h.Eventually("a pacer overrun", func() bool { return scrape(t, srv).sum("switchboard_pacer_overruns_total") >= 3 })
	invite := func(branch string) (int, string) { return rawInvite(t, srv, branch) }
	code, res := invite("overrun1")
	if code != 503 || !strings.Contains(res, "Retry-After:") {
		t.Fatalf("INVITE while the pacer overruns: %d, want 503 with Retry-After\n%s", code, res)
	}
	if got := scrape(t, srv).sum("switchboard_invites_rejected_total", `reason="pacer_overrun"`); got != 1 {
		t.Fatalf("invites_rejected_total{reason=pacer_overrun} = %v, want 1", got)
	}
	// The slow source ends after 25 frames; a second after the last
	// overrun, calls are let in (the flow rejects them 486). A loaded
	// machine may overrun on its own, so try a few times.
	for i := range 5 {
		time.Sleep(1200 * time.Millisecond)
		if code, _ = invite("overrun" + strconv.Itoa(i+2)); code != 503 {
			break
		}
	}
	if code != 486 {
		t.Fatalf("INVITE after the hold: %d, want the flow's 486", code)
	}
}

// At shutdown the server goes unready (/readyz 503) and refuses new
// INVITEs while its listeners still answer: a call whose caller takes 3 s
// to answer our BYE keeps shutdown going, and meanwhile OPTIONS gets 200.
func TestReadyzUnreadyBeforeListenersClose(t *testing.T) {
	srv, err := framework.NewServer(framework.Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", RTPPortMin: 33100, RTPPortMax: 33199, Logger: testLogger(t)},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
			if err := c.Answer(ctx); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	<-srv.Ready()
	readyz := func() int {
		res, err := http.Get("http://" + srv.HTTPAddr() + "/readyz")
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := readyz(); code != 200 {
		t.Fatalf("/readyz = %d while serving", code)
	}
	requireBinary(t, "sipp", "apt-get install sip-tester")
	dir := t.TempDir()
	sippDone := make(chan error, 1)
	var sippOut []byte
	go func() {
		out, err := runSIPpLoad(t, dir, nil, "-sf", scenario("uac_slow_bye_answer.xml"), "-s", "drain", "-m", "1", "-mp", "32600", srv.SIPAddr().String())
		sippOut = out
		sippDone <- err
	}()
	testharness.WaitUntil(t, 10*time.Second, "the SIPp call to be answered", func() bool {
		return srv.ActiveCalls() == 1 && scrape(t, srv).sum("switchboard_call_setup_seconds_count") == 1
	})
	stop()
	testharness.WaitUntil(t, 2*time.Second, "/readyz to fail", func() bool { return readyz() == 503 })
	// Still serving SIP: OPTIONS (a dispatcher's probe) and a new call
	// are refused with 503, so a proxy in front takes the node out.
	code, res := rawRequest(t, srv, func(l string) string {
		return "OPTIONS sip:" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + l + ";branch=z9hG4bKdrain1\r\n" +
			"From: <sip:probe@" + l + ">;tag=9\r\nTo: <sip:" + srv.SIPAddr().String() + ">\r\n" +
			"Call-ID: drain-opt\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	})
	if code != 503 {
		t.Fatalf("OPTIONS during shutdown: %d, want 503\n%s", code, res)
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	code, res = rawRequest(t, srv, func(l string) string {
		return "INVITE sip:late@" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + l + ";branch=z9hG4bKdrain2\r\n" +
			"From: <sip:late@" + l + ">;tag=10\r\nTo: <sip:late@" + srv.SIPAddr().String() + ">\r\n" +
			"Call-ID: drain-inv\r\nCSeq: 1 INVITE\r\nContact: <sip:late@" + l + ">\r\nMax-Forwards: 70\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	})
	if code != 503 {
		t.Fatalf("INVITE during shutdown: %d, want 503\n%s", code, res)
	}
	select {
	case <-done:
		t.Fatal("the server finished shutting down before the call ended: the test proved nothing")
	default:
	}
	if code := readyz(); code != 503 {
		t.Fatalf("/readyz = %d during shutdown", code)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
	select {
	case err := <-sippDone:
		if err != nil {
			t.Fatalf("sipp: %v\n%s", err, tail(sippOut, 3000))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sipp did not finish")
	}
}

// udpBound reports whether some socket of this machine is bound to UDP
// port on IPv4 (from /proc/net/udp, without touching the port).
func udpBound(port int) bool {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return false
	}
	needle := fmt.Sprintf(":%04X ", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasSuffix(f[1]+" ", needle) {
			return true
		}
	}
	return false
}

// A call the server places (Originate to a SIPp UAS): the responses we
// read are counted exactly as SIPp sent them, and the call as outbound.
// (The requests we send on it leave through a socket sipgo's client
// creates, which the metrics do not see yet: docs/operations.md.)
func TestOriginateCountsResponsesIn(t *testing.T) {
	if _, err := os.Stat("/proc/net/udp"); err != nil {
		t.Skip("needs /proc/net/udp to see SIPp bind its port")
	}
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0"}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Reject(ctx, 404)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uas := startSIPpUAS(t, ctx, "uas", "-trace_counts")
	// Dial only once SIPp listens, so that every INVITE we send reaches it.
	testharness.WaitUntil(t, 10*time.Second, "SIPp to bind its port", func() bool { return udpBound(uas.port) })
	ended := make(chan struct{})
	err := srv.Originate(ctx, uas.uri("bob"), framework.DialOptions{Timeout: 5 * time.Second},
		framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
			defer close(ended)
			time.Sleep(300 * time.Millisecond)
			return c.Hangup(ctx)
		}))
	if err != nil {
		t.Fatalf("originate: %v\n%s", err, tail(uas.out.Bytes(), 2000))
	}
	uas.wait(t, ctx)
	<-ended
	testharness.WaitUntil(t, 5*time.Second, "the call to end", func() bool { return srv.ActiveCalls() == 0 })
	m := scrape(t, srv)
	names, counts := sippCounts(t, uas.dir)
	checks := []metricCheck{
		{"calls started outbound", m.sum("switchboard_calls_started_total", `direction="outbound"`), 1},
		{"calls ended", m.sum("switchboard_calls_total"), 1},
		{"1xx to INVITE in", m.sum("switchboard_sip_responses_total", `direction="in"`, `method="INVITE"`, `class="1xx"`), sippMessage(names, counts, `^\d+_180_`, 0, "Sent", "Retrans")},
		{"2xx to INVITE in", m.sum("switchboard_sip_responses_total", `direction="in"`, `method="INVITE"`, `class="2xx"`), sippMessage(names, counts, `^\d+_200_`, 0, "Sent", "Retrans")},
		{"2xx to BYE in", m.sum("switchboard_sip_responses_total", `direction="in"`, `method="BYE"`, `class="2xx"`), sippMessage(names, counts, `^\d+_200_`, 1, "Sent", "Retrans")},
	}
	expectMetrics(t, checks, counts)
}

// The server hangs up SIPp's calls: the BYEs we send to callers (over
// the socket they called) and the 200s they answer are counted as SIPp
// saw them.
func TestServerByeCountedOut(t *testing.T) {
	const calls = 5
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0"}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Play(ctx, media.Silence(300*time.Millisecond)); err != nil {
			return err
		}
		return c.Hangup(ctx)
	}))
	dir := t.TempDir()
	out, err := runSIPpLoad(t, dir, nil, "-sf", scenario("uac_server_bye.xml"), "-s", "bye", "-m", strconv.Itoa(calls), "-r", "10", "-mp", "32700", srv.SIPAddr().String())
	if err != nil {
		t.Fatalf("sipp: %v\n%s", err, tail(out, 3000))
	}
	testharness.WaitUntil(t, 5*time.Second, "calls to end", func() bool { return srv.ActiveCalls() == 0 })
	m := scrape(t, srv)
	names, counts := sippCounts(t, dir)
	checks := []metricCheck{
		{"calls ended by us", m.sum("switchboard_calls_total", `answered="true"`), calls},
		{"BYEs out", m.sum("switchboard_sip_requests_total", `direction="out"`, `method="BYE"`), sippMessage(names, counts, `^\d+_BYE_`, 0, "Recv", "Retrans")},
		{"2xx to BYE in", m.sum("switchboard_sip_responses_total", `direction="in"`, `method="BYE"`, `class="2xx"`), sippMessage(names, counts, `^\d+_200_`, 1, "Sent", "Retrans")},
		{"2xx to INVITE out", m.sum("switchboard_sip_responses_total", `direction="out"`, `method="INVITE"`, `class="2xx"`), sippMessage(names, counts, `^\d+_200_`, 0, "Recv", "Retrans")},
	}
	expectMetrics(t, checks, counts)
}

// rawInvite sends one INVITE for user "other" over UDP and returns the
// final status and response.
func rawInvite(t *testing.T, srv *framework.Server, branch string) (int, string) {
	t.Helper()
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	return rawRequest(t, srv, func(l string) string {
		return "INVITE sip:other@" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + l + ";branch=z9hG4bK" + branch + "\r\n" +
			"From: <sip:x@" + l + ">;tag=" + branch + "\r\nTo: <sip:other@" + srv.SIPAddr().String() + ">\r\n" +
			"Call-ID: " + branch + "\r\nCSeq: 1 INVITE\r\nContact: <sip:x@" + l + ">\r\nMax-Forwards: 70\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp
	})
}

// With MaxCalls 1, a second call while one is up gets 503 + Retry-After
// (counted as max_calls); once the first ends, calls are let in again.
func TestMaxCallsRefusesExcess(t *testing.T) {
	router := framework.NewRouter()
	router.Handle("tone", apps.Tone(1000))
	router.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return c.Reject(ctx, 486) }))
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", Overload: sip.OverloadOptions{MaxCalls: 1}}, router)
	h := testharness.New(t, srv)
	up := h.Call("tone", testharness.HarnessCallOptions{Name: "the call up"})
	up.ExpectTone(1000)
	code, res := rawInvite(t, srv, "maxcalls1")
	if code != 503 || !strings.Contains(res, "Retry-After: 5") {
		t.Fatalf("second call: %d, want 503 with the default Retry-After 5\n%s", code, res)
	}
	if got := scrape(t, srv).sum("switchboard_invites_rejected_total", `reason="max_calls"`); got != 1 {
		t.Fatalf("invites_rejected_total{reason=max_calls} = %v, want 1", got)
	}
	up.ExpectTone(1000) // the call up kept its tone
	up.HangUp()
	h.Eventually("the call to end", func() bool { return srv.ActiveCalls() == 0 && srv.Agent().InboundCalls() == 0 })
	if code, res := rawInvite(t, srv, "maxcalls2"); code != 486 {
		t.Fatalf("call after the first ended: %d, want the flow's 486\n%s", code, res)
	}
}

// SIP over WebSocket is counted both ways: an OPTIONS in, its 200 out.
func TestWebSocketMessagesCounted(t *testing.T) {
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0"}, apps.Tone(1000))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dialer{Protocols: []string{"sip"}}.Dial(ctx, "ws://"+srv.HTTPAddr()+"/sip")
	if err != nil {
		t.Fatalf("WebSocket dial: %v", err)
	}
	defer conn.Close()
	target := "sip:" + srv.SIPAddr().String()
	msg := "OPTIONS " + target + " SIP/2.0\r\nVia: SIP/2.0/WS x.invalid;branch=z9hG4bKwsopt1\r\n" +
		"From: <sip:web@example.invalid>;tag=ws1\r\nTo: <" + target + ">\r\nCall-ID: ws-opt-1\r\nCSeq: 1 OPTIONS\r\n" +
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := wsutil.ReadServerText(conn)
	if err != nil || !strings.HasPrefix(string(res), "SIP/2.0 200") {
		t.Fatalf("OPTIONS over WebSocket: %v %q", err, res)
	}
	// The 200 is counted once its write has returned, which may be just
	// after we read it.
	var m metricsSnapshot
	testharness.WaitUntil(t, 5*time.Second, "the 200 to be counted", func() bool {
		m = scrape(t, srv)
		return m.sum("switchboard_sip_responses_total", `direction="out"`, `method="OPTIONS"`, `class="2xx"`) >= 1
	})
	if got := m.sum("switchboard_sip_requests_total", `direction="in"`, `method="OPTIONS"`); got != 1 {
		t.Errorf("OPTIONS in = %v, want 1", got)
	}
	if got := m.sum("switchboard_sip_responses_total", `direction="out"`, `method="OPTIONS"`, `class="2xx"`); got != 1 {
		t.Errorf("2xx to OPTIONS out = %v, want 1", got)
	}
}

// A per-source limit (sip.CallLimits) refusing a call is counted with
// its own reason, beside the server-wide ones.
func TestSourceLimitRefusalsCounted(t *testing.T) {
	router := framework.NewRouter()
	router.Handle("tone", apps.Tone(1000))
	router.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error { return c.Reject(ctx, 486) }))
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", CallLimits: sip.CallLimits{GuestCalls: 1, GuestRate: -1}}, router)
	h := testharness.New(t, srv)
	up := h.Call("tone", testharness.HarnessCallOptions{Name: "the call up"})
	up.ExpectTone(1000)
	if code, res := rawInvite(t, srv, "source1"); code != 503 {
		t.Fatalf("second guest call from the same address: %d, want 503\n%s", code, res)
	}
	m := scrape(t, srv)
	if got := m.sum("switchboard_invites_rejected_total", `reason="source_calls"`); got != 1 {
		t.Errorf("invites_rejected_total{reason=source_calls} = %v, want 1", got)
	}
	if got := m.sum("switchboard_invites_rejected_total", `reason="max_calls"`) + m.sum("switchboard_invites_rejected_total", `reason="pending_invites"`); got != 0 {
		t.Errorf("server-wide refusals = %v, want 0", got)
	}
}

// With Config.DrainTimeout, shutdown lets the calls up end on their own:
// new calls and OPTIONS get 503 while the call up keeps its audio and
// gets no BYE; when its caller hangs up, ListenAndServe returns at once.
// EndDrain cuts a drain short: the calls still up get BYE.
func TestDrainLetsCallsFinish(t *testing.T) {
	for _, tc := range []struct {
		name     string
		endDrain bool // cut the drain short instead of hanging up
	}{{"caller hangs up", false}, {"drain cut short", true}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := framework.NewServer(framework.Config{SIPAddr: "127.0.0.1:0", HTTPAddr: "-", RTPPortMin: 33200, RTPPortMax: 33299,
				DrainTimeout: time.Minute, Logger: testLogger(t)},
				framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
					if err := c.Answer(ctx); err != nil {
						return err
					}
					return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
				}))
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			done := make(chan error, 1)
			go func() { done <- srv.ListenAndServe(ctx) }()
			<-srv.Ready()
			phone, err := testharness.NewPhone(testharness.PhoneOptions{RTPPortMin: 33300, RTPPortMax: 33399, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer phone.Close()
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			call, err := phone.Call(cctx, "sip:tone@"+srv.SIPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := call.WaitTone(cctx, 1000, 20); err != nil {
				t.Fatalf("no tone before the drain: %v", err)
			}
			stop() // SIGTERM
			// A new call is refused, and a dispatcher's probe too.
			testharness.WaitUntil(t, 5*time.Second, "OPTIONS to get 503", func() bool {
				code, _ := rawRequest(t, srv, func(l string) string {
					return "OPTIONS sip:" + srv.SIPAddr().String() + " SIP/2.0\r\n" +
						"Via: SIP/2.0/UDP " + l + ";branch=z9hG4bK" + strconv.Itoa(rand.Int()) + "\r\n" +
						"From: <sip:probe@" + l + ">;tag=9\r\nTo: <sip:" + srv.SIPAddr().String() + ">\r\n" +
						"Call-ID: drain-opt-" + strconv.Itoa(rand.Int()) + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
				})
				return code == 503
			})
			if _, err := phone.Call(cctx, "sip:tone@"+srv.SIPAddr().String()); err == nil || !strings.Contains(err.Error(), "503") {
				t.Fatalf("a new call while draining: %v, want 503", err)
			}
			// The call up keeps its audio, with no BYE.
			mark := call.Mark()
			time.Sleep(time.Second)
			select {
			case <-call.Leg.Done():
				t.Fatalf("the call was ended by the drain: %v", call.Leg.Err())
			default:
			}
			if share := call.ToneShare(mark, 1000); share < 0.5 {
				t.Fatalf("the call up lost its audio while draining (1 kHz share %.2f)", share)
			}
			select {
			case <-done:
				t.Fatal("ListenAndServe returned with a call up")
			default:
			}
			start := time.Now()
			if tc.endDrain {
				srv.EndDrain()
				select {
				case <-call.Leg.Done():
				case <-time.After(10 * time.Second):
					t.Fatal("EndDrain did not hang up the call")
				}
			} else if err := call.Hangup(cctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("ListenAndServe did not return after the last call ended")
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("shutdown took %s after the last call ended", took)
			}
		})
	}
}
