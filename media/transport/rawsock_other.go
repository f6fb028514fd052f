//go:build !linux

package transport

import (
	"errors"
	"net/netip"
)

// Without epoll there is no poller, so transports keep net.UDPConns.
const rawSockets = false

func bindRawUDP(ip netip.Addr, port int) (int, bool, error) {
	return -1, false, errors.New("transport: no raw sockets on this platform")
}

func rawSendTo(fd int, v6 bool, pkt []byte, to netip.AddrPort) error {
	return errors.New("transport: no raw sockets on this platform")
}

func closeRaw(fd int) {}
