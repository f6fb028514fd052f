// Package dsp is signal processing on plain 16-bit PCM ([]int16): Goertzel
// power and dominant-frequency search, RMS, resampling (windowed-sinc
// filters for the engine's rates, a rational resampler for any pair), and
// the E-model that turns delay and loss into a MOS estimate. It knows
// nothing of frames, streams or codecs; package media builds on it.
package dsp
