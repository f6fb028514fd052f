package dsp

import (
	"math"
)

// DTMFDetector finds DTMF digits in audio (in-band DTMF, as PSTN gateways
// and old phones send it when RFC 4733 is not negotiated). Detect takes
// 20 ms blocks of 8 kHz audio and reports each key press once
// (media.DTMFDetector is the Sink around it).
//
// Each 20 ms frame is one Goertzel block (160 samples, 50 Hz resolution)
// over the 8 DTMF frequencies. A frame counts as a key when: it is loud
// enough; one row and one column tone each stand 8 dB above the other
// tones of their group; the twist (row vs column level) is within +4/-8 dB;
// the two tones carry at least 70 % of the frame's power (speech and music
// spread theirs); and the second harmonics of the pair are weak. A digit is
// reported after two consecutive key frames (40 ms) and not again until a
// non-key frame releases it, so a held key is one digit.
//
// Cost: ~10 µs per frame on the decode path; no allocation.
type DTMFDetector struct {
	candidate rune
	count     int
	reported  rune
	x         [DTMFBlock]float64
}

// DTMFBlock is the block Detect takes: 20 ms at 8 kHz.
const DTMFBlock = 160

// DTMFConfirm is how long a key must sound before Detect reports it:
// two consecutive key blocks.
const DTMFConfirm = dtmfConfirm * frameDuration

var (
	dtmfRows = [4]float64{697, 770, 852, 941}
	dtmfCols = [4]float64{1209, 1336, 1477, 1633}
	dtmfKeys = [4][4]rune{
		{'1', '2', '3', 'A'},
		{'4', '5', '6', 'B'},
		{'7', '8', '9', 'C'},
		{'*', '0', '#', 'D'},
	}
	dtmfRowCoeff, dtmfColCoeff, dtmfRowHarm, dtmfColHarm = func() (r, c, rh, ch [4]float64) {
		for i := range 4 {
			r[i] = 2 * math.Cos(2*math.Pi*dtmfRows[i]/8000)
			c[i] = 2 * math.Cos(2*math.Pi*dtmfCols[i]/8000)
			rh[i] = 2 * math.Cos(2*math.Pi*2*dtmfRows[i]/8000)
			ch[i] = 2 * math.Cos(2*math.Pi*2*dtmfCols[i]/8000)
		}
		return
	}()
)

// Detection thresholds (powers as GoertzelPower measures them).
const (
	dtmfMinPower     = 400 * 400 / 2 // each tone at least ~-38 dBm0 (peak 400)
	dtmfPeakRatio    = 6.3           // 8 dB over the rest of its group
	dtmfTwistNormal  = 2.5           // row may be 4 dB above column
	dtmfTwistReverse = 6.3           // column may be 8 dB above row
	dtmfToneShare    = 0.70          // of the frame's power
	dtmfHarmRatio    = 0.1           // second harmonic at most -10 dB
	dtmfConfirm      = 2             // frames
)

// Detect analyses one block of DTMFBlock samples at 8 kHz (other sizes
// are ignored) and returns a digit the first time a key press is
// confirmed. Cost: ~10 µs, no allocation.
func (d *DTMFDetector) Detect(block []int16) (digit rune, ok bool) {
	if len(block) != DTMFBlock {
		return 0, false
	}
	key := d.classify(block)
	switch {
	case key == 0:
		d.candidate, d.count, d.reported = 0, 0, 0
	case key == d.candidate:
		d.count++
	default:
		d.candidate, d.count = key, 1
	}
	if d.count >= dtmfConfirm && d.reported != key {
		d.reported = key
		return key, true
	}
	return 0, false
}

func (d *DTMFDetector) classify(s []int16) rune {
	var energy float64
	for i, v := range s {
		x := float64(v)
		d.x[i] = x
		energy += x * x
	}
	energy /= float64(len(s)) // mean power = RMS²
	if energy < 2*dtmfMinPower {
		return 0
	}
	x := d.x[:len(s)]
	rows := Goertzel4(x, &dtmfRowCoeff)
	cols := Goertzel4(x, &dtmfColCoeff)
	ri, rp, rRest := peak4(rows)
	ci, cp, cRest := peak4(cols)
	switch {
	case rp < dtmfMinPower || cp < dtmfMinPower:
		return 0
	case rp < dtmfPeakRatio*rRest || cp < dtmfPeakRatio*cRest:
		return 0
	case rp > dtmfTwistNormal*cp || cp > dtmfTwistReverse*rp:
		return 0
	case rp+cp < dtmfToneShare*energy:
		return 0
	}
	rh := Goertzel4(x, &dtmfRowHarm)
	ch := Goertzel4(x, &dtmfColHarm)
	if rh[ri] > dtmfHarmRatio*rp || ch[ci] > dtmfHarmRatio*cp {
		return 0
	}
	return dtmfKeys[ri][ci]
}

// peak4 returns the index and power of the strongest of four, and the
// strongest of the other three.
func peak4(p [4]float64) (idx int, peak, rest float64) {
	for i, v := range p {
		if v > peak {
			idx, peak = i, v
		}
	}
	for i, v := range p {
		if i != idx && v > rest {
			rest = v
		}
	}
	return idx, peak, rest
}

// DTMFFrequencies returns the row and column frequencies (Hz) of a DTMF
// key: 0-9, *, #, A-D (a-d accepted).
func DTMFFrequencies(digit rune) (row, col float64, ok bool) {
	for r, keys := range dtmfKeys {
		for c, k := range keys {
			if k == digit || (digit >= 'a' && digit <= 'd' && k == digit-('a'-'A')) {
				return dtmfRows[r], dtmfCols[c], true
			}
		}
	}
	return 0, 0, false
}
