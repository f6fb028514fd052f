package media

import (
	"testing"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// Three parties each say a tone; each hears the other two and not itself.
func TestMixerMixMinus(t *testing.T) {
	m := NewMixer(8000)
	m.Close() // drive the clock by hand: deterministic
	freqs := []float64{500, 1100, 1700}
	var parts []*Participant
	var tones []*sineSource
	for _, f := range freqs {
		parts = append(parts, m.Add())
		tones = append(tones, sine(f, 0, 6000))
	}
	heard := make([][]int16, len(parts))
	f := NewFrame(8000)
	for range 50 {
		for i, p := range parts {
			_ = tones[i].ReadFrame(f)
			_ = p.WriteFrame(f)
		}
		m.Tick()
		for i, p := range parts {
			_ = p.ReadFrame(f)
			heard[i] = append(heard[i], f.Samples...)
		}
	}
	for i := range parts {
		for j, fr := range freqs {
			pw := dsp.GoertzelPower(heard[i], 8000, fr)
			if i == j && pw > 1e3 {
				t.Errorf("party %d hears itself (%.0f Hz power %.0f)", i, fr, pw)
			}
			if i != j && pw < 1e6 {
				t.Errorf("party %d does not hear party %d (%.0f Hz power %.0f)", i, j, fr, pw)
			}
		}
	}
	// Mute: party 0 is no longer heard by the others.
	parts[0].SetMuted(true)
	for i, p := range parts {
		_ = tones[i].ReadFrame(f)
		_ = p.WriteFrame(f)
	}
	m.Tick()
	_ = parts[1].ReadFrame(f)
	if pw := dsp.GoertzelPower(f.Samples, 8000, 500); pw > 1e3 {
		t.Errorf("muted party still heard: %.0f", pw)
	}
	m.Remove(parts[2])
	if m.Len() != 2 {
		t.Fatalf("Len %d after Remove", m.Len())
	}
}

// A 16 kHz (G.722) participant in an 8 kHz room is heard and hears, with
// the conversion done inside the participant, allocation-free once warm.
func TestMixerMixedRates(t *testing.T) {
	m := NewMixer(8000)
	m.Close()
	wide, narrow := m.Add(), m.Add()
	wideTone := sine(1000, 0, 6000)
	narrowTone := sine(440, 0, 6000)
	fw, fn := NewFrame(16000), NewFrame(8000)
	var atWide, atNarrow []int16
	step := func() {
		_ = wideTone.ReadFrame(fw)
		_ = wide.WriteFrame(fw)
		_ = narrowTone.ReadFrame(fn)
		_ = narrow.WriteFrame(fn)
		m.Tick()
		_ = wide.ReadFrame(fw)
		_ = narrow.ReadFrame(fn)
	}
	for range 25 {
		step()
		atWide = append(atWide, fw.Samples...)
		atNarrow = append(atNarrow, fn.Samples...)
	}
	if f, _ := dsp.DominantFrequency(atWide[3200:], 16000, 100, 7600, 10); f < 435 || f > 445 {
		t.Errorf("16 kHz participant hears %.0f Hz, want 440", f)
	}
	if f, _ := dsp.DominantFrequency(atNarrow[1600:], 8000, 100, 3800, 10); f < 995 || f > 1005 {
		t.Errorf("8 kHz participant hears %.0f Hz, want 1000", f)
	}
	if a := testing.AllocsPerRun(50, step); a != 0 {
		t.Errorf("%v allocations per tick with a 16 kHz participant", a)
	}
}

// A participant that sends nothing does not stall the mix, and sums
// saturate instead of wrapping.
func TestMixerSilentInputAndSaturation(t *testing.T) {
	m := NewMixer(8000)
	m.Close()
	a, b, c := m.Add(), m.Add(), m.Add()
	loud := NewFrame(8000)
	for i := range loud.Samples {
		loud.Samples[i] = 30000
	}
	_ = a.WriteFrame(loud)
	_ = b.WriteFrame(loud)
	// c says nothing this tick.
	m.Tick()
	f := NewFrame(8000)
	_ = c.ReadFrame(f)
	if f.Samples[0] != 32767 {
		t.Fatalf("30000+30000 heard as %d, want saturation at 32767", f.Samples[0])
	}
	_ = a.ReadFrame(f)
	if f.Samples[0] != 30000 {
		t.Fatalf("a hears %d, want b's 30000", f.Samples[0])
	}
}

func BenchmarkMixerTick(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run("participants="+itoa(n), func(b *testing.B) {
			m := NewMixer(8000)
			m.Close()
			parts := make([]*Participant, n)
			for i := range parts {
				parts[i] = m.Add()
			}
			f := NewFrame(8000)
			tone := sine(440, 0, 0)
			_ = tone.ReadFrame(f)
			b.ReportAllocs()
			for b.Loop() {
				for _, p := range parts {
					_ = p.WriteFrame(f)
				}
				m.Tick()
				for _, p := range parts {
					_ = p.ReadFrame(f)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/participant")
		})
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
