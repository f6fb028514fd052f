//go:build !linux

package sip

import "net"

// withReadDelay: receive timestamps are read on Linux only; elsewhere
// the read delay stays zero and never refuses.
func withReadDelay(uc *net.UDPConn, _ *readDelay) net.PacketConn { return uc }
