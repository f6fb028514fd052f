//go:build !cgo

package codec

import "fmt"

// Without cgo there is no way to call libopus: Opus is not offered.

func loadOpus(string) error {
	return fmt.Errorf("%w: built without cgo (CGO_ENABLED=0)", errOpusUnavailable)
}

// OpusVersion returns "" in a build without cgo.
func OpusVersion() string { return "" }

// Opus is unavailable in a build without cgo; NewOpus always fails.
type Opus struct{}

// NewOpus reports that Opus is unavailable in a build without cgo.
func NewOpus(OpusOptions) (*Opus, error) { return nil, OpusAvailable() }

// Close does nothing.
func (*Opus) Close() {}

// Encode appends nothing.
func (*Opus) Encode(dst []byte, _ []int16) []byte { return dst }

// Decode appends nothing.
func (*Opus) Decode(dst []int16, _ []byte) []int16 { return dst }

// DecodeFEC appends nothing.
func (*Opus) DecodeFEC(dst []int16, _ []byte, _ int) []int16 { return dst }
