package testharness_test

import (
	"io"
	"log/slog"
	"os"
	"testing"

	sipgosip "github.com/emiago/sipgo/sip"
)

func TestMain(m *testing.M) {
	// sipgo logs a few transport warnings through its process-wide logger
	// (e.g. "UDP ref went negative" when a client agent closes); keep test
	// output for our own lines unless SWITCHBOARD_TEST_LOG asks for all.
	if os.Getenv("SWITCHBOARD_TEST_LOG") == "" {
		sipgosip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	os.Exit(m.Run())
}
