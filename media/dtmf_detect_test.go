package media_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
)

func detectAll(t *testing.T, src media.Source, through codec.Codec) string {
	t.Helper()
	var got []rune
	d := &media.DTMFDetector{OnDigit: func(ev media.DTMFEvent) { got = append(got, ev.Digit) }}
	f := media.NewFrame(8000)
	var payload []byte
	var pcm []int16
	for range 100000 {
		if err := src.ReadFrame(f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if through != nil { // through a codec, as on the wire
			payload = through.Encode(payload[:0], f.Samples)
			pcm = through.Decode(pcm[:0], payload)
			copy(f.Samples, pcm)
		}
		_ = d.WriteFrame(f)
	}
	return string(got)
}

func TestDTMFDetectorEveryDigit(t *testing.T) {
	const all = "0123456789*#ABCD"
	for _, c := range []codec.Codec{nil, codec.PCMU{}, codec.PCMA{}} {
		var srcs []media.Source
		for _, d := range all {
			s, ok := audio.DTMFTone(d, 80*time.Millisecond, 80*time.Millisecond)
			if !ok {
				t.Fatalf("no tone for %c", d)
			}
			srcs = append(srcs, s)
		}
		if got := detectAll(t, media.Sequence(srcs...), c); got != all {
			t.Errorf("codec %T: detected %q, want %q", c, got, all)
		}
	}
	// A key held for a second is one digit.
	s, _ := audio.DTMFTone('5', time.Second, 0)
	if got := detectAll(t, s, nil); got != "5" {
		t.Errorf("held key detected as %q", got)
	}
	// Single tones and quiet pairs are not digits.
	if got := detectAll(t, audio.NewTone(audio.Tone{Freqs: []float64{770}, Duration: time.Second}), nil); got != "" {
		t.Errorf("single tone detected as %q", got)
	}
	if got := detectAll(t, audio.NewTone(audio.Tone{Freqs: []float64{770, 1336}, Amplitude: 100, Duration: time.Second}), nil); got != "" {
		t.Errorf("-50 dBm0 pair detected as %q", got)
	}
	// Ringback and dial tone are not digits.
	if got := detectAll(t, audio.NewTone(audio.Tone{Freqs: []float64{440, 480}, Duration: 2 * time.Second}), nil); got != "" {
		t.Errorf("ringback detected as %q", got)
	}
}

// No false digits on a minute of speech (espeak-ng, as the issue asks).
func TestDTMFDetectorIgnoresSpeech(t *testing.T) {
	espeak, err := exec.LookPath("espeak-ng")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("espeak-ng is required in CI (apt-get install espeak-ng)")
		}
		t.Skip("espeak-ng not installed; apt-get install espeak-ng")
	}
	sox, err := exec.LookPath("sox")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sox is required in CI (apt-get install sox)")
		}
		t.Skip("sox not installed; apt-get install sox")
	}
	text := "Thank you for calling. Your call is important to us. Please stay on the line, and one of our " +
		"agents will be with you shortly. Did you know that you can also reach us on the web? Press one for sales, " +
		"two for support, three for billing, or stay on the line for the operator. The quick brown fox jumps over " +
		"the lazy dog, while six sick hicks nick six slick bricks with picks and sticks. "
	var speech []int16
	for _, voice := range []string{"en-us", "en-gb", "en-us+f3", "de"} {
		raw := filepath.Join(t.TempDir(), voice+"-22k.wav")
		path := filepath.Join(t.TempDir(), voice+".wav")
		if out, err := exec.Command(espeak, "-v", voice, "-w", raw, text+text).CombinedOutput(); err != nil {
			t.Fatalf("espeak-ng: %v %s", err, out)
		}
		if out, err := exec.Command(sox, raw, "-r", "8000", path).CombinedOutput(); err != nil {
			t.Fatalf("sox: %v %s", err, out)
		}
		w, err := audio.OpenWAV(path)
		if err != nil {
			t.Fatal(err)
		}
		f := media.NewFrame(8000)
		for w.ReadFrame(f) == nil {
			speech = append(speech, f.Samples...)
		}
	}
	if len(speech) < 60*8000 {
		t.Fatalf("only %.0f s of speech", float64(len(speech))/8000)
	}
	i := 0
	src := media.SourceFunc(func(f *media.Frame) error {
		if i+len(f.Samples) > len(speech) {
			return io.EOF
		}
		copy(f.Samples, speech[i:])
		i += len(f.Samples)
		return nil
	})
	if got := detectAll(t, src, codec.PCMU{}); got != "" {
		t.Fatalf("false digits in %.0f s of speech: %q", float64(len(speech))/8000, got)
	}
	t.Logf("%.0f s of speech, no false digits", float64(len(speech))/8000)
}

func BenchmarkDTMFDetector(b *testing.B) {
	s, _ := audio.DTMFTone('5', time.Hour, 0)
	f := media.NewFrame(8000)
	_ = s.ReadFrame(f)
	d := &media.DTMFDetector{}
	b.ReportAllocs()
	for b.Loop() {
		_ = d.WriteFrame(f)
	}
}
