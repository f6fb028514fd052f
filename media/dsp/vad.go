package dsp

import (
	"math"
	"time"
)

// VADOptions tune a VAD. The zero value suits telephone speech.
type VADOptions struct {
	// Threshold is how far above the noise floor a frame's power must be
	// to count as voice, in dB (default 12).
	Threshold float64
	// MinLevel is the RMS below which a frame is never voice, whatever the
	// noise floor (default 100, about -50 dBFS).
	MinLevel float64
	// Onset is how many consecutive voice frames start speech (default 3,
	// 60 ms), so clicks and short noises are not speech.
	Onset int
	// Hangover is how long speech must stay below the threshold before it
	// has ended (default 300 ms), which bridges the gaps between words.
	Hangover time.Duration
}

// VADEvent is a change between speaking and silent.
type VADEvent struct {
	// Speaking is true when speech starts and false when it ends.
	Speaking bool
	// At is the stream time of the change, counted from the VAD's first
	// frame: the first voice frame of the onset, or the end of the last
	// voice frame before the hangover. The event itself is reported
	// Onset frames or Hangover later.
	At time.Duration
	// Duration is, for a silent event, how long the speech lasted.
	Duration time.Duration
}

// VAD is an energy voice-activity detector: it decides for each 20 ms
// frame whether its power stands Threshold dB above an adaptive
// noise floor (and above MinLevel), declares speech after Onset voice
// frames in a row and silence after Hangover without one, and reports each
// change as Analyze's result (media.VAD is the Sink around it).
//
// The noise floor starts at the first frame's power, follows quieter
// frames quickly (30 % of the way per frame) and louder ones slowly: 1 dB
// per non-voice frame while silent, so a noise that grows steadily becomes
// the floor and never counts as speech, and 3 dB per second during voice.
// Speech dips between syllables and words; a noise that starts abruptly
// and is taken for speech does not, so when a 1.5 s window of "speech"
// has no frame near the floor, its quietest frame becomes the floor and
// the false speech ends after the hangover.
//
// Cost: one pass over the frame's samples (integer multiply-add), no
// allocation. Frames of any rate are accepted.
type VAD struct {
	thr, minPow         float64 // power ratio and absolute power
	riseIdle, riseSpeak float64 // floor growth per frame
	onset, hang         int     // frames
	win                 int     // frames of the stationarity window

	floor    float64
	started  bool
	frames   int64 // frames seen
	run      int   // consecutive voice frames
	quiet    int   // consecutive non-voice frames while speaking
	speaking bool
	winMin   float64 // quietest frame power in the current window
	winN     int     // frames in the current window
	startAt  int64   // frame index where the current speech began
	lastEnd  int64   // frame index after the last voice frame
}

// Floor bounds: the noise floor never goes below the power of an RMS of 5
// (digital silence would otherwise make any sound speech).
const vadMinFloor = 5 * 5

// NewVAD returns a VAD tuned by opts.
func NewVAD(opts VADOptions) *VAD {
	if opts.Threshold <= 0 {
		opts.Threshold = 12
	}
	if opts.MinLevel <= 0 {
		opts.MinLevel = 100
	}
	if opts.Onset <= 0 {
		opts.Onset = 3
	}
	if opts.Hangover <= 0 {
		opts.Hangover = 300 * time.Millisecond
	}
	return &VAD{
		thr:       math.Pow(10, opts.Threshold/10),
		minPow:    opts.MinLevel * opts.MinLevel,
		riseIdle:  math.Pow(10, 1.0/10),                // 1 dB per frame
		riseSpeak: math.Pow(10, 3.0/10/(1000/frameMs)), // 3 dB per second
		onset:     opts.Onset,
		hang:      int((opts.Hangover + frameDuration - 1) / frameDuration),
		win:       1500 / frameMs,
	}
}

// Speaking reports whether speech is under way.
func (v *VAD) Speaking() bool { return v.speaking }

// NoiseFloor returns the current noise floor as an RMS level.
func (v *VAD) NoiseFloor() float64 { return math.Sqrt(v.floor) }

// Analyze judges one 20 ms frame of samples (any rate) and reports
// whether it changed speaking to silent or back, and how.
func (v *VAD) Analyze(samples []int16) (ev VADEvent, changed bool) {
	if len(samples) == 0 {
		return VADEvent{}, false
	}
	var sum int64
	for _, s := range samples {
		sum += int64(s) * int64(s)
	}
	p := float64(sum) / float64(len(samples))
	idx := v.frames
	v.frames++
	if !v.started {
		v.started = true
		v.floor = max(p, vadMinFloor)
	}
	voice := p > v.floor*v.thr && p > v.minPow
	// Adapt the floor after the decision, so a frame is judged against
	// the noise before it.
	switch {
	case p < v.floor:
		v.floor = max(v.floor+(p-v.floor)*0.3, vadMinFloor)
	case v.speaking || voice: // a voice frame says little about the noise
		v.floor = min(v.floor*v.riseSpeak, p)
	default:
		v.floor = min(v.floor*v.riseIdle, p)
	}
	if v.winN == 0 || p < v.winMin {
		v.winMin = p
	}
	if v.winN++; v.winN == v.win {
		if v.speaking && v.winMin > v.floor*v.thr {
			v.floor = v.winMin // no dip in 1.5 s: not speech but noise
		}
		v.winN = 0
	}

	if voice {
		v.run++
		v.quiet = 0
		v.lastEnd = idx + 1
		if !v.speaking && v.run >= v.onset {
			v.speaking = true
			v.startAt = idx + 1 - int64(v.run)
			return VADEvent{Speaking: true, At: frameTime(v.startAt)}, true
		}
		return VADEvent{}, false
	}
	v.run = 0
	if v.speaking {
		v.quiet++
		if v.quiet >= v.hang {
			v.speaking = false
			return VADEvent{Speaking: false, At: frameTime(v.lastEnd), Duration: frameTime(v.lastEnd - v.startAt)}, true
		}
	}
	return VADEvent{}, false
}

// frameMs is the frame length Analyze assumes (media.FrameDurationMs).
const frameMs = 20

// frameDuration is frameMs as a time.Duration.
const frameDuration = frameMs * time.Millisecond

func frameTime(n int64) time.Duration { return time.Duration(n) * frameDuration }
