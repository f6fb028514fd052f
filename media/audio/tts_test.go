package audio

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

// countingEspeak writes a wrapper that logs each run to a file and then
// runs espeak-ng, and returns the wrapper and a function counting runs.
func countingEspeak(t *testing.T) (string, func() int) {
	t.Helper()
	real := mediatest.NeedEspeak(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "runs")
	wrapper := filepath.Join(dir, "espeak-wrapper")
	script := "#!/bin/sh\necho run >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return wrapper, func() int {
		b, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "run\n")
	}
}

func TestSayProducesSpeech(t *testing.T) {
	cmd, runs := countingEspeak(t)
	tts := &TTS{Command: cmd}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const text = "Thank you for calling Switchboard. Please hold."
	for _, rate := range []int{8000, 16000, 48000} {
		src, err := tts.Speech(ctx, text, "", rate)
		if err != nil {
			t.Fatal(err)
		}
		s := mediatest.ReadAll(t, src, rate)
		d := time.Duration(len(s)) * time.Second / time.Duration(rate)
		// Seven words at espeak-ng's 175 words per minute: 2-4 s.
		if d < 1500*time.Millisecond || d > 5*time.Second {
			t.Errorf("%d Hz: %s of speech for %d words", rate, d, 7)
		}
		// Speech is loud in its voiced parts and silent between sentences.
		loud, quiet := 0, 0
		n := media.SamplesPerFrame(rate)
		for i := 0; i+n <= len(s); i += n {
			switch r := dsp.RMS(s[i : i+n]); {
			case r > 1000:
				loud++
			case r < 50:
				quiet++
			}
		}
		frames := len(s) / n
		if loud < frames/3 || quiet == 0 {
			t.Errorf("%d Hz: %d of %d frames loud, %d quiet: not speech-like", rate, loud, frames, quiet)
		}
		// espeak-ng's voice lives below 4 kHz mostly; its fundamental for
		// en-us is around 100-200 Hz.
		if f, _ := dsp.DominantFrequency(s, rate, 80, 3800, 10); f < 80 || f > 1500 {
			t.Errorf("%d Hz: dominant frequency %.0f Hz", rate, f)
		}
	}
	if got := runs(); got != 3 {
		t.Fatalf("espeak-ng ran %d times for three rates, want 3", got)
	}
	// Same text, voice and rate: served from the cache.
	for range 5 {
		src, err := tts.Speech(ctx, text, DefaultVoice, 8000)
		if err != nil {
			t.Fatal(err)
		}
		if len(mediatest.ReadAll(t, src, 8000)) == 0 {
			t.Fatal("cached speech is empty")
		}
	}
	if got := runs(); got != 3 {
		t.Fatalf("espeak-ng ran %d times after cache hits, want 3", got)
	}
	st := tts.Stats()
	if st.Hits != 5 || st.Runs != 3 || st.Entries != 3 {
		t.Fatalf("stats %+v", st)
	}
	// Another voice is another synthesis.
	if _, err := tts.Speech(ctx, text, "en-gb", 8000); err != nil {
		t.Fatal(err)
	}
	if got := runs(); got != 4 {
		t.Fatalf("espeak-ng ran %d times, want 4", got)
	}
}

// Concurrent identical requests share one synthesis.
func TestSaySharesConcurrentSynthesis(t *testing.T) {
	cmd, runs := countingEspeak(t)
	tts := &TTS{Command: cmd}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	lens := make(chan int, 8)
	for range 8 {
		wg.Go(func() {
			src, err := tts.Speech(ctx, "All of you at once.", "en-us", 8000)
			if err != nil {
				errs <- err
				return
			}
			lens <- len(mediatest.ReadAll(t, src, 8000))
		})
	}
	wg.Wait()
	close(errs)
	close(lens)
	for err := range errs {
		t.Fatal(err)
	}
	first := -1
	for n := range lens {
		if first >= 0 && n != first {
			t.Fatalf("players of one synthesis differ: %d and %d samples", first, n)
		}
		first = n
	}
	if got := runs(); got != 1 {
		t.Fatalf("espeak-ng ran %d times for 8 identical concurrent requests, want 1", got)
	}
}

func TestSayCacheIsBounded(t *testing.T) {
	cmd, runs := countingEspeak(t)
	// Room for one short word at 8 kHz (about 16 kB each).
	tts := &TTS{Command: cmd, CacheBytes: 15000}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, text := range []string{"one", "two", "one"} {
		if _, err := tts.Speech(ctx, text, "", 8000); err != nil {
			t.Fatal(err)
		}
	}
	st := tts.Stats()
	if st.CacheUsed > 15000 || st.Entries != 1 {
		t.Fatalf("cache over its bound: %+v", st)
	}
	if got := runs(); got != 3 {
		t.Fatalf("espeak-ng ran %d times, want 3 (\"one\" evicted by \"two\")", got)
	}
}

func TestSayMissingBinary(t *testing.T) {
	tts := &TTS{Command: filepath.Join(t.TempDir(), "no-espeak-ng-here")}
	_, err := tts.Speech(context.Background(), "hello", "", 8000)
	if !errors.Is(err, ErrTTSUnavailable) || !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("error %v, want ErrTTSUnavailable wrapping exec.ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install espeak-ng") {
		t.Fatalf("error %q does not say how to install espeak-ng", err)
	}
	tts = &TTS{Command: "no-such-espeak-ng-binary"}
	if _, err := tts.Speech(context.Background(), "hello", "", 8000); !errors.Is(err, ErrTTSUnavailable) {
		t.Fatalf("PATH lookup: %v", err)
	}
}

func TestSayRejectsBadInput(t *testing.T) {
	tts := &TTS{Command: "/bin/false", MaxText: 10}
	ctx := context.Background()
	for _, voice := range []string{"-w/tmp/x", "en us", "../../etc/passwd", "en;rm"} {
		if _, err := tts.Speech(ctx, "hi", voice, 8000); err == nil || !strings.Contains(err.Error(), "invalid voice") {
			t.Errorf("voice %q: %v", voice, err)
		}
	}
	if _, err := tts.Speech(ctx, "far too long a text", "", 8000); !errors.Is(err, ErrSpeechTooLong) {
		t.Errorf("long text: %v", err)
	}
	if _, err := tts.Speech(ctx, "hi", "", 0); err == nil {
		t.Error("rate 0 accepted")
	}
	// A synthesiser that fails reports it and is not cached.
	if _, err := tts.Speech(ctx, "hi", "", 8000); err == nil {
		t.Error("a failing espeak-ng gave speech")
	}
}

// Text that looks like options or markup is spoken, never obeyed: it goes
// in on stdin.
func TestSayTextIsNotAnOption(t *testing.T) {
	mediatest.NeedEspeak(t)
	dir := t.TempDir()
	victim := filepath.Join(dir, "written.wav")
	tts := &TTS{}
	src, err := tts.Speech(context.Background(), "-w "+victim+" --version", "", 8000)
	if err != nil {
		t.Fatal(err)
	}
	if len(mediatest.ReadAll(t, src, 8000)) < 8000/2 {
		t.Fatal("option-looking text was not spoken")
	}
	if _, err := os.Stat(victim); err == nil {
		t.Fatal("text was taken as an espeak-ng option")
	}
}

func TestSayLimitsAudio(t *testing.T) {
	mediatest.NeedEspeak(t)
	tts := &TTS{MaxAudio: time.Second}
	_, err := tts.Speech(context.Background(), strings.Repeat("This sentence takes a while to say. ", 4), "", 8000)
	if !errors.Is(err, ErrSpeechTooLong) {
		t.Fatalf("error %v, want ErrSpeechTooLong", err)
	}
}

// A caller that stops waiting gets ctx's error at once, and a synthesis
// nobody waits for is killed.
func TestSayCancelledWait(t *testing.T) {
	real := mediatest.NeedEspeak(t)
	dir := t.TempDir()
	slow, ready := filepath.Join(dir, "slow-espeak"), filepath.Join(dir, "ready")
	// Hangs until the ready file exists, then is espeak-ng.
	script := "#!/bin/sh\n[ -e '" + ready + "' ] && exec '" + real + "' \"$@\"\nexec sleep 30\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tts := &TTS{Command: slow}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := tts.Speech(ctx, "never mind", "", 8000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Speech returned after %s", d)
	}
	// The abandoned synthesis is not joined: the same request runs anew,
	// here with a synthesiser that works.
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := tts.Speech(ctx2, "never mind", "", 8000); err != nil {
		t.Fatalf("request after an abandoned synthesis: %v", err)
	}
	if st := tts.Stats(); st.Runs != 2 {
		t.Fatalf("stats %+v, want 2 runs", st)
	}
}

func TestResampleRational(t *testing.T) {
	for _, c := range []struct{ from, to int }{{22050, 8000}, {22050, 16000}, {22050, 48000}, {16000, 8000}, {8000, 22050}} {
		in := mediatest.ReadAll(t, NewTone(Tone{Freqs: []float64{1000}, Amplitude: 10000, Duration: time.Second}), c.from)
		out, err := dsp.ResampleRational(nil, in, c.from, c.to)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != c.to {
			t.Errorf("%d→%d: %d samples for a second", c.from, c.to, len(out))
		}
		mid := out[len(out)/4 : 3*len(out)/4]
		if f, _ := dsp.DominantFrequency(mid, c.to, 100, 3800, 10); f < 995 || f > 1005 {
			t.Errorf("%d→%d: 1 kHz came out at %.1f Hz", c.from, c.to, f)
		}
		if r := dsp.RMS(mid); r < 10000*0.707*0.98 || r > 10000*0.707*1.02 {
			t.Errorf("%d→%d: rms %.0f, want %.0f", c.from, c.to, r, 10000*0.707)
		}
	}
	// Content above the new Nyquist frequency is filtered, not aliased.
	in := mediatest.ReadAll(t, NewTone(Tone{Freqs: []float64{6000}, Amplitude: 10000, Duration: time.Second}), 22050)
	out, _ := dsp.ResampleRational(nil, in, 22050, 8000)
	if r := dsp.RMS(out[2000:6000]); r > 10 {
		t.Errorf("6 kHz at 22050→8000 left rms %.1f (aliased to 2 kHz)", r)
	}
	if _, err := dsp.ResampleRational(nil, in, 22050, 7919); err == nil {
		t.Error("a ratio of 7919/22050 was accepted")
	}
}

// espeak-ng's output is trusted, but the parser must not panic on
// anything a broken or replaced binary writes.
func FuzzParseStreamedWAV(f *testing.F) {
	good := appendWAVHeader(nil, 22050, 1, 0x7ffff000)
	f.Add(append(good, 1, 2, 3, 4))
	f.Add(good[:20])
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEdata\xff\xff\xff\xff"))
	f.Add(append(append([]byte{}, good[:12]...), []byte("LIST\x03\x00\x00\x00abc\x00")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, rate, err := parseStreamedWAV(b)
		if err == nil && (rate <= 0 || len(s) > len(b)/2) {
			t.Fatalf("rate %d, %d samples from %d bytes", rate, len(s), len(b))
		}
	})
}

// A cached utterance: what every call after the first pays for Say.
func BenchmarkTTSCacheHit(b *testing.B) {
	mediatest.NeedEspeak(b)
	tts := &TTS{}
	ctx := context.Background()
	if _, err := tts.Speech(ctx, "Thank you for calling.", "", 8000); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tts.Speech(ctx, "Thank you for calling.", "", 8000); err != nil {
			b.Fatal(err)
		}
	}
}

// A first synthesis: espeak-ng's process plus the resampling.
func BenchmarkTTSSynthesis(b *testing.B) {
	mediatest.NeedEspeak(b)
	tts := &TTS{CacheBytes: -1}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tts.Speech(ctx, "Thank you for calling. Please hold.", "", 8000); err != nil {
			b.Fatal(err)
		}
	}
}

// One second of espeak-ng audio converted to 8 kHz.
func BenchmarkResampleRational22050To8000(b *testing.B) {
	in := make([]int16, 22050)
	for i := range in {
		in[i] = int16(i * 7)
	}
	out := make([]int16, 0, 8001)
	b.ReportAllocs()
	for b.Loop() {
		out, _ = dsp.ResampleRational(out[:0], in, 22050, 8000)
	}
}

// Installing espeak-ng on a running server takes effect without a restart.
func TestSayFindsEspeakInstalledLater(t *testing.T) {
	real := mediatest.NeedEspeak(t)
	path := filepath.Join(t.TempDir(), "espeak-ng")
	tts := &TTS{Command: path}
	if _, err := tts.Speech(context.Background(), "hello", "", 8000); !errors.Is(err, ErrTTSUnavailable) {
		t.Fatalf("before install: %v", err)
	}
	if err := os.Symlink(real, path); err != nil {
		t.Fatal(err)
	}
	if _, err := tts.Speech(context.Background(), "hello", "", 8000); err != nil {
		t.Fatalf("after install: %v", err)
	}
}
