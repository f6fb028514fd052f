//go:build !unix

package sip

// descriptorLimit has no descriptor limit to read on this system; the
// total connection cap defaults to a quarter of this.
func descriptorLimit() uint64 { return 16384 }

// descriptorsExhausted cannot tell here.
func descriptorsExhausted() bool { return false }

// raiseReadBuffer is a no-op here.
func raiseReadBuffer(c any, want int) int { return 0 }
