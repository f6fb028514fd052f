//go:build race

package transport

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// code that reuses pooled buffers (pion/srtp's AES-CM keystream) allocates
// now and then; allocation counts are checked without -race.
const raceEnabled = true
