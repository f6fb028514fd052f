package cluster

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/testharness"
)

func testLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// toneFlow answers and plays a 1 kHz tone for a minute.
var toneFlow = framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
	return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: time.Minute}))
})

// startServer runs a framework server on loopback for the test's life.
func startServer(t *testing.T, cfg framework.Config, h framework.Handler) *framework.Server {
	t.Helper()
	cfg.SIPAddr = "127.0.0.1:0"
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.Logger = testLogger()
	srv, err := framework.NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	testharness.Serve(t, srv)
	return srv
}

// freeTCP is a port for a node's SIP, HTTP or cluster listener, or
// etcd's: free for UDP and TCP, from a range below the kernel's
// ephemeral ports and apart from the nodes' RTP ranges (50000-55999),
// the testharness package's peers (21000-22999) and the media tests'
// fixed pools (24100-25999, 42000-43499; go test runs packages side by
// side, and a port another package's RTP just left can still receive
// that call's strays): 26000-27999 gives 1,000 pairs, enough for the
// package's ~25 clusters. So an RTP socket or an outgoing connection
// cannot take it before the process binds it.
func freeTCP(t *testing.T) int {
	t.Helper()
	return testharness.FreePortPair(t, 26000, 28000)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// freeUDPTCP returns a port free on 127.0.0.1 for both UDP and TCP (SIP
// listens on both), from the same range as freeTCP: below the ephemeral
// ports, so it can no longer fall inside another node's RTP range.
func freeUDPTCP(t *testing.T) int {
	t.Helper()
	return testharness.FreePortPair(t, 26000, 28000)
}
