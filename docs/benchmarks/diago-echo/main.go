// Command diago-echo is the emiago/diago side of docs/benchmarks/sidebyside.sh:
// a diago user agent that answers every INVITE on one UDP address and echoes
// the caller's audio back to it, the same job as Switchboard's `reflect`
// route. It is its own Go module (a nested go.mod), outside Switchboard's
// ./..., so the main build and CI never fetch diago.
//
//	go build -o diago-echo . && ./diago-echo -addr 127.0.0.1:56061 -rtp-ports 30000-55999
//
// On SIGINT or SIGTERM it stops listening and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/diago"
	dmedia "github.com/emiago/diago/media"
	"github.com/emiago/sipgo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:56061", "UDP host:port to listen for SIP on")
	ports := flag.String("rtp-ports", "", "RTP port range MIN-MAX for the calls' media (default: ports the kernel picks)")
	level := flag.String("log-level", "error", "debug, info, warn or error")
	flag.Parse()
	if err := run(*addr, *ports, *level); err != nil {
		fmt.Fprintln(os.Stderr, "diago-echo:", err)
		os.Exit(1)
	}
}

func run(addr, ports, level string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("log level %q: %w", level, err)
	}
	// diago and sipgo log through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})))

	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("address %q: port: %w", addr, err)
	}
	if ports != "" {
		lo, hi, ok := strings.Cut(ports, "-")
		min, err1 := strconv.Atoi(lo)
		max, err2 := strconv.Atoi(hi)
		if !ok || err1 != nil || err2 != nil || min <= 0 || max <= min || max > 65535 {
			return fmt.Errorf("rtp-ports %q: want MIN-MAX", ports)
		}
		// diago keeps its RTP range in package variables.
		dmedia.RTPPortStart, dmedia.RTPPortEnd = min, max
	}

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("diago-echo"))
	if err != nil {
		return fmt.Errorf("user agent: %w", err)
	}
	defer ua.Close()
	dg := diago.NewDiago(ua, diago.WithTransport(diago.Transport{
		Transport: "udp",
		BindHost:  host,
		BindPort:  port,
	}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = dg.Serve(ctx, echo)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	return nil
}

// echo answers the call and sends back every audio packet it receives until
// the caller hangs up (diago's DialogMedia.Echo copies the audio reader to
// the audio writer without decoding).
func echo(d *diago.DialogServerSession) {
	if err := d.Trying(); err != nil {
		slog.Debug("trying", "call_id", d.InviteRequest.CallID().Value(), "error", err)
		return
	}
	med, err := d.Answer(diago.AnswerOptions{})
	if err != nil {
		// A failed answer is a failed call of the benchmark: say why, a
		// few times a second.
		if answerErrors.allow(time.Now()) {
			slog.Error("answer failed", "call_id", d.InviteRequest.CallID().Value(), "error", err)
		}
		return
	}
	if err := med.Echo(); err != nil {
		slog.Debug("echo ended", "call_id", d.InviteRequest.CallID().Value(), "error", err)
	}
}

// answerErrors limits the "answer failed" lines to 5 a second.
var answerErrors = &throttle{burst: 5}

// throttle allows burst events per wall-clock second.
type throttle struct {
	mu    sync.Mutex
	burst int
	sec   int64
	n     int
}

func (t *throttle) allow(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := now.Unix(); s != t.sec {
		t.sec, t.n = s, 0
	}
	t.n++
	return t.n <= t.burst
}
