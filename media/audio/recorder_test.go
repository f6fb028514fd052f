package audio

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// A 16 kHz leg (G.722) recorded into an 8 kHz file is converted, not refused.
func TestWAVRecorderConvertsRate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.wav")
	r, err := NewWAVRecorder(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	tone := NewTone(Tone{Freqs: []float64{1000}, Duration: time.Second})
	f := media.NewFrame(16000)
	for tone.ReadFrame(f) == nil {
		if err := r.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Rate() != 8000 || w.Duration() != time.Second {
		t.Fatalf("recorded %d Hz, %s; want 8000 Hz, 1s", w.Rate(), w.Duration())
	}
	g := media.NewFrame(8000)
	var all []int16
	for w.ReadFrame(g) == nil {
		all = append(all, g.Samples...)
	}
	if fr, _ := dsp.DominantFrequency(all[800:], 8000, 100, 3800, 10); fr < 995 || fr > 1005 {
		t.Fatalf("recording is at %.0f Hz, want 1000", fr)
	}
}

func TestWAVRecorderRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rec.wav")
	r, err := NewWAVRecorder(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	tone := NewTone(Tone{Freqs: []float64{440}, Duration: time.Second})
	f := media.NewFrame(8000)
	for tone.ReadFrame(f) == nil {
		if err := r.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.WriteFrame(media.NewFrame(12000)); err == nil {
		t.Fatal("a 12 kHz frame (no integer ratio) was accepted by an 8 kHz recording")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := w.Duration(); d != time.Second {
		t.Fatalf("duration %s", d)
	}
	var all []int16
	for {
		if err := w.ReadFrame(f); errors.Is(err, io.EOF) {
			break
		}
		all = append(all, f.Samples...)
	}
	if fr, _ := dsp.DominantFrequency(all, 8000, 100, 3800, 10); fr < 435 || fr > 445 {
		t.Fatalf("recorded %.0f Hz", fr)
	}
}

// The recorder's promise: a process killed with SIGKILL while recording
// leaves a WAV that sox reads. The test runs itself as the victim.
func TestWAVRecorderSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv("SWITCHBOARD_RECORD_VICTIM"); path != "" {
		r, err := NewWAVRecorder(path, 8000)
		if err != nil {
			os.Exit(3)
		}
		tone := NewTone(Tone{Freqs: []float64{1000}})
		f := media.NewFrame(8000)
		for {
			_ = tone.ReadFrame(f)
			_ = r.WriteFrame(f)
			time.Sleep(2 * time.Millisecond) // ~10x real time
		}
	}
	sox, err := exec.LookPath("sox")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sox is required in CI (apt-get install sox)")
		}
		t.Skip("sox not installed; apt-get install sox")
	}
	path := filepath.Join(t.TempDir(), "killed.wav")
	cmd := exec.Command(os.Args[0], "-test.run=^TestWAVRecorderSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_RECORD_VICTIM="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	_ = cmd.Process.Kill() // SIGKILL: no deferred Close, no final header
	_ = cmd.Wait()
	out, err := exec.Command(sox, path, "-n", "stat").CombinedOutput()
	if err != nil {
		t.Fatalf("sox cannot read the killed recording: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Length (seconds)") {
		t.Fatalf("sox stat: %s", out)
	}
	w, err := OpenWAV(path)
	if err != nil {
		t.Fatal(err)
	}
	if w.Duration() < 200*time.Millisecond {
		t.Fatalf("killed recording holds only %s", w.Duration())
	}
	t.Logf("killed recording: %s readable\n%s", w.Duration(), out)
}
