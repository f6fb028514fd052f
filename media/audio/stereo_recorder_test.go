package audio

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

// readStereo reads a 2-channel 16-bit WAV written by StereoRecorder and
// checks its header on the way.
func readStereo(t *testing.T, path string) (rate int, left, right []int16) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 44 || string(b[:4]) != "RIFF" || string(b[36:40]) != "data" {
		t.Fatalf("not a WAV file with a 44-byte header")
	}
	le16 := func(i int) int { return int(binary.LittleEndian.Uint16(b[i:])) }
	if le16(20) != 1 || le16(22) != 2 || le16(32) != 4 || le16(34) != 16 {
		t.Fatalf("fmt: format %d, %d channels, align %d, %d bits; want 16-bit stereo PCM", le16(20), le16(22), le16(32), le16(34))
	}
	rate = int(binary.LittleEndian.Uint32(b[24:]))
	size := int(binary.LittleEndian.Uint32(b[40:]))
	if riff := int(binary.LittleEndian.Uint32(b[4:])); riff != 36+size {
		t.Fatalf("RIFF size %d, data size %d", riff, size)
	}
	if size > len(b)-44 || size%4 != 0 {
		t.Fatalf("data size %d with %d bytes in the file", size, len(b)-44)
	}
	for i := 44; i+4 <= 44+size; i += 4 {
		left = append(left, int16(binary.LittleEndian.Uint16(b[i:])))
		right = append(right, int16(binary.LittleEndian.Uint16(b[i+2:])))
	}
	return rate, left, right
}

func TestStereoRecorderChannelsAndAlignment(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stereo.wav")
	r, err := newStereoRecorder(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	lt := NewTone(Tone{Freqs: []float64{500}, Amplitude: 4000})
	rt := NewTone(Tone{Freqs: []float64{1200}, Amplitude: 6000})
	f := media.NewFrame(8000)
	const ticks = 100
	for i := range ticks {
		_ = lt.ReadFrame(f)
		_ = r.Left().WriteFrame(f)
		// The right side is missing frames 40-59 (a leg not yet bridged,
		// packets lost) and sends 70 and 71 late, together.
		switch {
		case i >= 40 && i < 60, i == 70:
			_ = rt.ReadFrame(f)
		case i == 71:
			_ = rt.ReadFrame(f)
			_ = r.Right().WriteFrame(f)
			_ = rt.ReadFrame(f)
			_ = r.Right().WriteFrame(f)
		default:
			_ = rt.ReadFrame(f)
			_ = r.Right().WriteFrame(f)
		}
		_ = r.Right().WriteFrame(media.NewFrame(16000)) // wrong rate: dropped
		if err := r.tick(); err != nil {
			t.Fatal(err)
		}
	}
	if d := r.Duration(); d != 2*time.Second {
		t.Fatalf("recorded %s for %d ticks", d, ticks)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	rate, left, right := readStereo(t, path)
	// 100 ticks and the one late frame still queued at Close.
	if rate != 8000 || len(left) != 101*160 || len(right) != len(left) {
		t.Fatalf("%d Hz, %d/%d samples", rate, len(left), len(right))
	}
	frame := func(s []int16, i int) []int16 { return s[i*160 : (i+1)*160] }
	if f, _ := dsp.DominantFrequency(left[:100*160], 8000, 100, 3800, 10); f < 495 || f > 505 {
		t.Errorf("left channel at %.0f Hz, want 500", f)
	}
	if f, _ := dsp.DominantFrequency(right[:40*160], 8000, 100, 3800, 10); f < 1195 || f > 1205 {
		t.Errorf("right channel at %.0f Hz, want 1200", f)
	}
	for i := range 101 {
		l, rr := dsp.RMS(frame(left, i)), dsp.RMS(frame(right, i))
		// Tick 70 finds nothing; from 71 on the right runs one frame
		// behind, the last one flushed by Close as tick 100.
		wantRight := !(i >= 40 && i < 60) && i != 70
		if (l > 1000) != (i < 100) {
			t.Errorf("tick %d: left rms %.0f", i, l)
		}
		if (rr > 1000) != wantRight {
			t.Errorf("tick %d: right rms %.0f, want sound %v", i, rr, wantRight)
		}
	}
	// The gap is silence on the right only; the left goes on.
	if dsp.RMS(right[40*160:60*160]) != 0 || dsp.RMS(left[40*160:60*160]) < 2000 {
		t.Error("missing right frames were not recorded as silence")
	}
	if got := r.right.dropped; got != ticks {
		t.Errorf("dropped %d wrong-rate frames, want %d", got, ticks)
	}
	if sox, err := exec.LookPath("sox"); err == nil {
		if out, err := exec.Command(sox, path, "-n", "stat").CombinedOutput(); err != nil || !strings.Contains(string(out), "Length (seconds):      2.020000") {
			t.Errorf("sox stat: %v\n%s", err, out)
		}
	}
}

func TestStereoRecorderClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock.wav")
	r, err := NewStereoRecorder(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // nobody writes: silence accrues
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, left, right := readStereo(t, path)
	if d := time.Duration(len(left)) * time.Second / 8000; d < 200*time.Millisecond || dsp.RMS(left) != 0 || dsp.RMS(right) != 0 {
		t.Fatalf("idle recording: %s, rms %.0f/%.0f", d, dsp.RMS(left), dsp.RMS(right))
	}
	if err := r.Left().WriteFrame(media.NewFrame(8000)); err != nil {
		t.Fatal(err) // writes after Close are harmless
	}
}

// Like the mono recorder: SIGKILL mid-recording leaves a stereo file sox
// reads, with both channels.
func TestStereoRecorderSurvivesSIGKILL(t *testing.T) {
	if path := os.Getenv("SWITCHBOARD_STEREO_VICTIM"); path != "" {
		r, err := NewStereoRecorder(path, 8000)
		if err != nil {
			os.Exit(3)
		}
		lt := NewTone(Tone{Freqs: []float64{500}})
		rt := NewTone(Tone{Freqs: []float64{1200}})
		f := media.NewFrame(8000)
		for {
			_ = lt.ReadFrame(f)
			_ = r.Left().WriteFrame(f)
			_ = rt.ReadFrame(f)
			_ = r.Right().WriteFrame(f)
			time.Sleep(20 * time.Millisecond)
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestStereoRecorderSurvivesSIGKILL$")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_STEREO_VICTIM="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	out, err := exec.Command(sox, path, "-n", "stat").CombinedOutput()
	if err != nil {
		t.Fatalf("sox cannot read the killed recording: %v\n%s", err, out)
	}
	for ch, want := range map[string]float64{"1": 500, "2": 1200} {
		mono := filepath.Join(t.TempDir(), "ch"+ch+".wav")
		if out, err := exec.Command(sox, path, mono, "remix", ch).CombinedOutput(); err != nil {
			t.Fatalf("sox remix %s: %v\n%s", ch, err, out)
		}
		w, err := OpenWAV(mono)
		if err != nil {
			t.Fatal(err)
		}
		if w.Duration() < 400*time.Millisecond {
			t.Fatalf("killed recording holds only %s", w.Duration())
		}
		s := mediatest.ReadAll(t, w, 8000)
		if f, _ := dsp.DominantFrequency(s[len(s)/2:], 8000, 100, 3800, 10); f < want-5 || f > want+5 {
			t.Errorf("channel %s at %.0f Hz, want %.0f", ch, f, want)
		}
	}
}

func BenchmarkStereoRecorderTick(b *testing.B) {
	r, err := newStereoRecorder(filepath.Join(b.TempDir(), "bench.wav"), 8000)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	f := media.NewFrame(8000)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Left().WriteFrame(f)
		_ = r.Right().WriteFrame(f)
		_ = r.tick()
	}
}
