package media_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/switchboard-voice/switchboard/media"
)

// Helpers shared by the external tests (those that play audio package
// sources through media); the audio package has its own.

// readAllFrames reads src at rate until io.EOF (or max frames) and returns
// the frames' samples one after the other and the number of frames.
func readAllFrames(t *testing.T, src media.Source, rate, max int) ([]int16, int) {
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

// neverSource is empty even after a rewind.
type neverSource struct{ rewinds int }

// failingSource always fails with err.
type failingSource struct{ err error }

// needEspeak returns espeak-ng's path; outside CI it skips when missing.
func needEspeak(t testing.TB) string {
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

func readAll(t testing.TB, src media.Source, rate int) []int16 {
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

func (*neverSource) ReadFrame(*media.Frame) error { return io.EOF }

func (s *neverSource) Rewind() { s.rewinds++ }

func (s failingSource) ReadFrame(*media.Frame) error { return s.err }

func (failingSource) Rewind() {}
