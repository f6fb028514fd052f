package dsp

import (
	"math"
	"time"
)

// EModel is the input of a simplified ITU-T G.107 E-model, the estimate
// VoIP monitors use to turn network measurements into a MOS:
//
//	R = 93.2 − Id − Ie,eff
//
// 93.2 is R with G.107's default values for everything but delay and
// equipment impairment. Id, the delay impairment, uses the Cole &
// Rosenbluth fit of G.107's Id for the default echo parameters:
// Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3), d the one-way
// mouth-to-ear delay in ms. Ie,eff is G.107's (7-29):
// Ie + (95 − Ie)·Ppl / (Ppl/BurstR + Bpl).
//
// Computing it is a handful of float operations.
type EModel struct {
	// Delay is the one-way mouth-to-ear delay: network (RTT/2), jitter
	// buffer, packetisation and codec lookahead.
	Delay time.Duration
	// LossPercent is the packet loss probability Ppl in percent (0–100).
	LossPercent float64
	// BurstR is the burst ratio; 1 (or 0, taken as 1) means random loss.
	BurstR float64
	// Ie and Bpl are the codec's equipment impairment factor and packet
	// loss robustness factor (ITU-T G.113 Appendix I); see CodecImpairment.
	Ie, Bpl float64
}

// R returns the transmission rating factor, 0–93.2.
func (m EModel) R() float64 {
	d := float64(m.Delay) / float64(time.Millisecond)
	if d < 0 || math.IsNaN(d) {
		d = 0
	}
	id := 0.024 * d
	if d > 177.3 {
		id += 0.11 * (d - 177.3)
	}
	ppl := m.LossPercent
	if ppl < 0 || math.IsNaN(ppl) {
		ppl = 0
	}
	if ppl > 100 {
		ppl = 100
	}
	burst := m.BurstR
	if burst <= 0 || math.IsNaN(burst) {
		burst = 1
	}
	ieEff := m.Ie
	if ppl > 0 {
		ieEff += (95 - m.Ie) * ppl / (ppl/burst + m.Bpl)
	}
	r := 93.2 - id - ieEff
	if r < 0 {
		r = 0
	}
	return r
}

// MOS returns the estimated mean opinion score (conversational quality,
// 1–4.5) for m.
func (m EModel) MOS() float64 { return MOSFromR(m.R()) }

// MOSFromR converts an R factor to a MOS with ITU-T G.107 (B-4):
// 1 for R < 0, 4.5 for R > 100, else 1 + 0.035R + R(R−60)(100−R)·7·10⁻⁶.
func MOSFromR(r float64) float64 {
	switch {
	case r <= 0 || math.IsNaN(r):
		return 1
	case r >= 100:
		return 4.5
	}
	return 1 + 0.035*r + r*(r-60)*(100-r)*7e-6
}

// CodecImpairment returns the G.113 Appendix I equipment impairment Ie and
// packet-loss robustness Bpl of a codec by its SDP name. G.711 (PCMU,
// PCMA) is 0 and 25.1 (with packet loss concealment, random loss). Codecs
// without a narrowband value in G.113 (G.722 and Opus are rated on the
// wideband scale) get G.711's values, which rates them as no better than
// narrowband G.711 under loss.
func CodecImpairment(name string) (ie, bpl float64) {
	switch name {
	case "G729":
		return 11, 19
	default: // PCMU, PCMA and codecs without a narrowband rating
		return 0, 25.1
	}
}
