//go:build !linux

package sip

import "testing"

// awaitKernelTimestamps: receive timestamps are read on Linux only (the
// tests that call it skip elsewhere).
func awaitKernelTimestamps(t *testing.T) {}
