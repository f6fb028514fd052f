package testharness

import (
	"errors"
	"io"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// LoudestWindow reads a WAV file (any rate the media package reads,
// analysed at 8 kHz) and measures its loudest stretch of the given length:
// a recording may start or end in silence, or be cut by a hangup, so the
// loudest window is the fair one to judge.
func LoudestWindow(path string, window time.Duration) (Listen, error) {
	w, err := audio.OpenWAV(path)
	if err != nil {
		return Listen{}, err
	}
	var all []int16
	f := media.NewFrame(8000)
	for {
		if err := w.ReadFrame(f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return Listen{}, err
		}
		all = append(all, f.Samples...)
	}
	n := int(window.Seconds() * 8000)
	var best Listen
	for i := 0; i+n <= len(all); i += max(n/2, 1) {
		if r := dsp.RMS(all[i : i+n]); r > best.RMS {
			best.RMS = r
			best.Frequency, best.Power = dsp.DominantFrequency(all[i:i+n], 8000, 100, 3800, 10)
		}
	}
	return best, nil
}
