package media_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/internal/mediatest"
)

// vadRun feeds samples to a new VAD frame by frame and returns its events.
func vadRun(t *testing.T, opts dsp.VADOptions, samples []int16) []dsp.VADEvent {
	t.Helper()
	var evs []dsp.VADEvent
	v := media.NewVAD(opts, func(ev dsp.VADEvent) { evs = append(evs, ev) })
	f := media.NewFrame(8000)
	for i := 0; i+160 <= len(samples); i += 160 {
		copy(f.Samples, samples[i:i+160])
		if err := v.WriteFrame(f); err != nil {
			t.Fatal(err)
		}
	}
	return evs
}

// signal builds 8 kHz audio from pieces.
type piece struct {
	d    time.Duration
	freq float64 // 0: silence
	amp  int16
}

func signal(t *testing.T, pieces ...piece) []int16 {
	var out []int16
	for _, p := range pieces {
		var src media.Source = media.Silence(p.d)
		if p.freq > 0 {
			src = audio.NewTone(audio.Tone{Freqs: []float64{p.freq}, Amplitude: p.amp, Duration: p.d})
		}
		out = append(out, mediatest.ReadAll(t, src, 8000)...)
	}
	return out
}

// addNoise adds seeded white noise of the given RMS.
func addGaussNoise(s []int16, rms float64, seed uint64) []int16 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]int16, len(s))
	for i, v := range s {
		out[i] = dsp.Clip16(float64(v) + r.NormFloat64()*rms)
	}
	return out
}

func near(a, b, tol time.Duration) bool { return a-b <= tol && b-a <= tol }

func TestVADToneBursts(t *testing.T) {
	s := signal(t, piece{500 * time.Millisecond, 0, 0}, piece{time.Second, 440, 3000},
		piece{time.Second, 0, 0}, piece{600 * time.Millisecond, 1000, 3000}, piece{time.Second, 0, 0})
	for _, noise := range []float64{0, 60} { // also 30 dB above a noise floor
		evs := vadRun(t, dsp.VADOptions{}, addGaussNoise(s, noise, 7))
		want := []dsp.VADEvent{
			{Speaking: true, At: 500 * time.Millisecond},
			{Speaking: false, At: 1500 * time.Millisecond, Duration: time.Second},
			{Speaking: true, At: 2500 * time.Millisecond},
			{Speaking: false, At: 3100 * time.Millisecond, Duration: 600 * time.Millisecond},
		}
		if len(evs) != len(want) {
			t.Fatalf("noise %.0f: events %+v, want %+v", noise, evs, want)
		}
		for i, w := range want {
			if evs[i].Speaking != w.Speaking || !near(evs[i].At, w.At, 20*time.Millisecond) || !near(evs[i].Duration, w.Duration, 40*time.Millisecond) {
				t.Errorf("noise %.0f: event %d = %+v, want %+v", noise, i, evs[i], w)
			}
		}
	}
}

func TestVADHangoverBridgesShortGaps(t *testing.T) {
	gap := func(g time.Duration) []int16 {
		return signal(t, piece{200 * time.Millisecond, 0, 0}, piece{500 * time.Millisecond, 300, 2000},
			piece{g, 0, 0}, piece{500 * time.Millisecond, 300, 2000}, piece{time.Second, 0, 0})
	}
	if evs := vadRun(t, dsp.VADOptions{}, gap(200*time.Millisecond)); len(evs) != 2 || evs[1].Duration < 1100*time.Millisecond {
		t.Errorf("200 ms gap under a 300 ms hangover: %+v, want one talkspurt of 1.2 s", evs)
	}
	if evs := vadRun(t, dsp.VADOptions{}, gap(500*time.Millisecond)); len(evs) != 4 {
		t.Errorf("500 ms gap: %+v, want two talkspurts", evs)
	}
	if evs := vadRun(t, dsp.VADOptions{Hangover: 600 * time.Millisecond}, gap(500*time.Millisecond)); len(evs) != 2 {
		t.Errorf("500 ms gap under a 600 ms hangover: %+v, want one talkspurt", evs)
	}
	// The silent event is reported one hangover after the speech ends.
	s := gap(200 * time.Millisecond)
	v := media.NewVAD(dsp.VADOptions{}, nil)
	var reported time.Duration = -1
	var frames int64 // written so far, the current one included
	v.OnChange = func(ev dsp.VADEvent) {
		if !ev.Speaking {
			reported = time.Duration(frames) * media.FrameDuration
		}
	}
	f := media.NewFrame(8000)
	for i := 0; i+160 <= len(s); i += 160 {
		copy(f.Samples, s[i:])
		frames++
		_ = v.WriteFrame(f)
	}
	if !near(reported, 1400*time.Millisecond+300*time.Millisecond, 20*time.Millisecond) {
		t.Errorf("silence reported at %s, want 1.7 s", reported)
	}
}

func TestVADOnsetRejectsClicks(t *testing.T) {
	s := signal(t, piece{500 * time.Millisecond, 0, 0}, piece{40 * time.Millisecond, 1000, 8000}, piece{time.Second, 0, 0},
		piece{60 * time.Millisecond, 1000, 8000}, piece{time.Second, 0, 0})
	evs := vadRun(t, dsp.VADOptions{}, s)
	if len(evs) != 2 || !near(evs[0].At, 1540*time.Millisecond, 20*time.Millisecond) {
		t.Fatalf("events %+v: want the 40 ms burst ignored and the 60 ms one at 1.54 s", evs)
	}
}

// Steady white noise is never speech: quiet (below MinLevel), and louder
// noise that becomes the floor; so is noise whose level drifts slowly.
func TestVADIgnoresNoise(t *testing.T) {
	silence := signal(t, piece{20 * time.Second, 0, 0})
	for _, rms := range []float64{30, 90, 300, 1500} {
		if evs := vadRun(t, dsp.VADOptions{}, addGaussNoise(silence, rms, uint64(rms))); len(evs) != 0 {
			t.Errorf("white noise at rms %.0f: %+v", rms, evs)
		}
	}
	// Noise that swells from rms 100 to 2000 over 10 s.
	s := addGaussNoise(silence, 1, 3)
	r := rand.New(rand.NewPCG(4, 1))
	for i := range s {
		level := 100 + 1900*min(float64(i)/80000, 1)
		s[i] = dsp.Clip16(r.NormFloat64() * level)
	}
	if evs := vadRun(t, dsp.VADOptions{}, s); len(evs) != 0 {
		t.Errorf("swelling noise: %+v", evs)
	}
}

// Noise that starts abruptly is taken for speech, but only until the VAD
// sees it never dips: it is released within a few seconds and stays so.
func TestVADReleasesAbruptNoise(t *testing.T) {
	s := signal(t, piece{time.Second, 0, 0}, piece{10 * time.Second, 0, 0})
	r := rand.New(rand.NewPCG(5, 1))
	for i := 8000; i < len(s); i++ {
		s[i] = dsp.Clip16(r.NormFloat64() * 1500)
	}
	evs := vadRun(t, dsp.VADOptions{}, s)
	if len(evs) != 2 || !evs[0].Speaking || evs[1].Speaking || evs[1].At > 4*time.Second {
		t.Fatalf("events %+v: want one false talkspurt from 1 s, over before 4 s", evs)
	}
	// Then real speech over that noise is found again.
	s = append(s, addGaussNoise(signal(t, piece{time.Second, 400, 12000}, piece{time.Second, 0, 0}), 1500, 6)...)
	evs = vadRun(t, dsp.VADOptions{}, s)
	if len(evs) != 4 || !near(evs[2].At, 11*time.Second, 40*time.Millisecond) || !near(evs[3].At, 12*time.Second, 40*time.Millisecond) {
		t.Fatalf("events %+v: want the tone at 11-12 s found over the noise", evs)
	}
}

// Speech from espeak-ng, two sentences with a pause, over low noise: one
// talkspurt per sentence (the gaps between words bridged), aligned with
// where the sentences really are.
func TestVADSpeech(t *testing.T) {
	mediatest.NeedEspeak(t)
	tts := &audio.TTS{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var speech [][]int16
	for _, text := range []string{"Hello, and welcome to the test.", "Please say something after the tone.",
		// Six seconds without a pause longer than the hangover: the
		// stationarity check must not take it for noise.
		"The quick brown fox jumps over the lazy dog and then runs all the way back home again without ever stopping to rest."} {
		src, err := tts.Speech(ctx, text, "en-us", 8000)
		if err != nil {
			t.Fatal(err)
		}
		speech = append(speech, mediatest.ReadAll(t, src, 8000))
	}
	// The true extent of each sentence: its first and last loud frames.
	extent := func(s []int16) (lo, hi int) {
		lo, hi = -1, 0
		for i := 0; i+160 <= len(s); i += 160 {
			if dsp.RMS(s[i:i+160]) > 300 {
				if lo < 0 {
					lo = i
				}
				hi = i + 160
			}
		}
		return lo, hi
	}
	var s []int16
	var truth []time.Duration // start, end, start, end
	sil := make([]int16, 8000*3/2)
	s = append(s, sil...)
	for _, sp := range speech {
		lo, hi := extent(sp)
		base := len(s)
		s = append(s, sp...)
		truth = append(truth, time.Duration(base+lo)*time.Second/8000, time.Duration(base+hi)*time.Second/8000)
		s = append(s, sil...)
	}
	// Speech peaks around rms 3000-5000: noise at rms 200 is about 25 dB
	// below it, and hides the softest sounds at the sentences' ends.
	for _, c := range []struct {
		noise float64
		tol   time.Duration
	}{{0, 100 * time.Millisecond}, {50, 100 * time.Millisecond}, {200, 150 * time.Millisecond}} {
		noise := c.noise
		evs := vadRun(t, dsp.VADOptions{}, addGaussNoise(s, noise, 11))
		if len(evs) != 6 {
			t.Fatalf("noise %.0f: %d events %+v, want 6 (three sentences); truth %v", noise, len(evs), evs, truth)
		}
		for i, ev := range evs {
			if ev.Speaking != (i%2 == 0) || !near(ev.At, truth[i], c.tol) {
				t.Errorf("noise %.0f: event %d %+v, truth %s", noise, i, ev, truth[i])
			}
		}
		t.Logf("noise %.0f: %+v; truth %v", noise, evs, truth)
	}
}

func TestVADAllocatesNothing(t *testing.T) {
	n := 0
	v := media.NewVAD(dsp.VADOptions{}, func(dsp.VADEvent) { n++ })
	s := signal(t, piece{400 * time.Millisecond, 0, 0}, piece{400 * time.Millisecond, 500, 3000})
	f := media.NewFrame(8000)
	i := 0
	allocs := testing.AllocsPerRun(400, func() {
		copy(f.Samples, s[i*160%len(s):])
		_ = v.WriteFrame(f)
		i++
	})
	if allocs != 0 || n == 0 {
		t.Fatalf("%.1f allocations per frame (%d changes)", allocs, n)
	}
}

func BenchmarkVAD(b *testing.B) {
	f := media.NewFrame(8000)
	_ = audio.NewTone(audio.Tone{Freqs: []float64{500}, Duration: time.Second}).ReadFrame(f)
	v := media.NewVAD(dsp.VADOptions{}, nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = v.WriteFrame(f)
	}
}
