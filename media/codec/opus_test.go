package codec

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Where libopus cannot be loaded the error says so and how to fix it.
func TestOpusUnavailableError(t *testing.T) {
	err := loadOpus("libopus-not-installed.so.0")
	if !errors.Is(err, errOpusUnavailable) {
		t.Fatalf("loadOpus of a missing library: %v", err)
	}
	if !strings.Contains(err.Error(), "libopus0") && !strings.Contains(err.Error(), "cgo") {
		t.Errorf("error does not say what to install: %v", err)
	}
}

// Opus is registered exactly when libopus loads, after the built-in codecs.
func TestOpusRegistration(t *testing.T) {
	without := registryWith(errOpusUnavailable)
	with := registryWith(nil)
	if len(with) != len(without)+1 || with[len(with)-1].Name != "opus" || without[len(without)-1].Name != "G722" {
		t.Fatalf("registry without libopus %v, with %v", without, with)
	}
	for i := range without {
		if with[i].Name != without[i].Name {
			t.Fatalf("opus changed the order of the built-in codecs: %v", with)
		}
	}

	c, ok := LookupCodec("opus", 48000)
	if err := OpusAvailable(); err != nil {
		if ok {
			t.Fatalf("opus registered although unavailable: %v", err)
		}
		for _, c := range Codecs() {
			if c.Name == "opus" {
				t.Fatal("Codecs() lists opus although unavailable")
			}
		}
		t.Skipf("libopus not loadable here (%v); the rest needs it", err)
	}
	if !ok || c.SampleRate != 48000 || c.Channels != 2 || c.PayloadType != 111 || c.TimestampStep() != 960 || c.SamplesPerFrame() != 960 {
		t.Fatalf("opus spec %+v, %v", c, ok)
	}
	cs := Codecs()
	if cs[0].Name != "PCMU" || cs[len(cs)-1].Name != "opus" {
		t.Errorf("preference order %v", cs)
	}
	if _, ok := LookupStaticPayloadType(111); ok {
		t.Error("111 is a dynamic payload type; it must not map without rtpmap")
	}
}

// Both codecs satisfy Codec in every build.
var (
	_ Codec = (*Opus)(nil)
	_ Codec = (*G722)(nil)
)

// On a machine without libopus the codec is not offered and NewOpus says
// why. The test re-runs itself with the library name replaced by one that
// does not exist, before anything has loaded the real one.
func TestOpusMissingLibraryNotOffered(t *testing.T) {
	if os.Getenv("SB_OPUS_MISSING_CHILD") == "1" {
		opusLoad = sync.OnceValue(func() error { return loadOpus("libopus-missing-for-test.so.0") })
		for _, c := range Codecs() {
			if c.Name == "opus" {
				t.Fatal("opus offered without libopus")
			}
		}
		if _, ok := LookupCodec("opus", 48000); ok {
			t.Fatal("opus/48000 accepted without libopus")
		}
		if _, err := NewOpus(OpusOptions{}); err == nil || !errors.Is(err, errOpusUnavailable) {
			t.Fatalf("NewOpus without libopus: %v", err)
		} else {
			t.Logf("NewOpus: %v", err)
		}
		if len(Codecs()) != 3 {
			t.Fatalf("codecs without libopus: %v", Codecs())
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpusMissingLibraryNotOffered$", "-test.v")
	cmd.Env = append(os.Environ(), "SB_OPUS_MISSING_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
	if !strings.Contains(string(out), "libopus0") && !strings.Contains(string(out), "cgo") {
		t.Errorf("the error does not say what to install:\n%s", out)
	}
}
