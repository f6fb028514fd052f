package testharness

import (
	"os"
	"os/exec"
	"testing"
)

// RequireBinary returns the path of the peer program name (sipp, etcd,
// kamailio, ...). When it is missing the test fails in CI (CI set) and is
// skipped elsewhere, saying how to install it.
func RequireBinary(t testing.TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI but not installed (%s)", name, install)
		}
		t.Skipf("%s not installed; install it with: %s", name, install)
	}
	return p
}
