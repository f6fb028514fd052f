// Package mediatest holds helpers shared by the tests of media and its
// sub-packages (audio, ...): reading a Source to its end, finding
// espeak-ng. It is for tests only.
package mediatest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/switchboard-voice/switchboard/media"
)

// ReadFrames reads src at rate until io.EOF (or max frames) and returns
// the frames' samples one after the other and the number of frames. Every
// frame must hold exactly one frame time of samples.
func ReadFrames(t testing.TB, src media.Source, rate, max int) ([]int16, int) {
	t.Helper()
	f := media.NewFrame(rate)
	var all []int16
	for n := 0; n < max; n++ {
		err := src.ReadFrame(f)
		if errors.Is(err, io.EOF) {
			return all, n
		}
		if err != nil {
			t.Fatalf("frame %d: %v", n, err)
		}
		if len(f.Samples) != media.SamplesPerFrame(rate) {
			t.Fatalf("frame %d has %d samples at %d Hz", n, len(f.Samples), rate)
		}
		all = append(all, f.Samples...)
	}
	return all, max
}

// ReadAll reads src at rate to its end (at most 100,000 frames, failing
// the test if it never ends) and returns every sample.
func ReadAll(t testing.TB, src media.Source, rate int) []int16 {
	t.Helper()
	f := media.NewFrame(rate)
	var out []int16
	for range 100000 {
		err := src.ReadFrame(f)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f.Samples...)
	}
	t.Fatal("source never ended")
	return nil
}

// NeedEspeak returns espeak-ng's path; the test fails in CI when it is
// missing and is skipped elsewhere, saying how to install it.
func NeedEspeak(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("espeak-ng")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("espeak-ng is required in CI (apt-get install espeak-ng)")
		}
		t.Skip("espeak-ng not installed; apt-get install espeak-ng")
	}
	return p
}
