package media

import "github.com/switchboard-voice/switchboard/media/dsp"

// VAD is the Sink of a voice-activity detector (dsp.VAD): it analyses
// each frame it is written and reports each change between speaking and
// silent to OnChange. Cost: dsp.VAD's, one pass over the samples, no
// allocation.
type VAD struct {
	// OnChange is called from WriteFrame with each change.
	OnChange func(dsp.VADEvent)
	d        *dsp.VAD
}

// NewVAD returns a VAD with opts that reports changes to onChange.
func NewVAD(opts dsp.VADOptions, onChange func(dsp.VADEvent)) *VAD {
	return &VAD{OnChange: onChange, d: dsp.NewVAD(opts)}
}

// Speaking reports whether speech is under way.
func (v *VAD) Speaking() bool { return v.d.Speaking() }

// NoiseFloor returns the current noise floor as an RMS level.
func (v *VAD) NoiseFloor() float64 { return v.d.NoiseFloor() }

// WriteFrame analyses one frame.
func (v *VAD) WriteFrame(f *Frame) error {
	if ev, ok := v.d.Analyze(f.Samples); ok && v.OnChange != nil {
		v.OnChange(ev)
	}
	return nil
}
