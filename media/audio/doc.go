// Package audio makes and keeps sound for the media engine, as
// media.Source and media.Sink values: generated tones (with cadence) and
// in-band DTMF, WAV files read (resampled to the frame's rate) and
// written, text-to-speech through espeak-ng (cached), and recorders — mono
// and stereo — that leave a playable file even if the process dies. It
// builds on package media; media does not import it.
package audio
