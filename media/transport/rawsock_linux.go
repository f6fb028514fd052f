//go:build linux

package transport

import (
	"net/netip"
	"syscall"
	"unsafe"
)

// rawSockets reports whether this platform has raw sockets for polled
// transports (bindRawUDP and rawSendTo below).
const rawSockets = true

// bindRawUDP opens a non-blocking UDP socket bound to ip:port that Go's
// netpoller never sees: the transport's poller is its only reader, so an
// arriving datagram wakes one thread (ours), not the runtime's netpoller
// as well, and a send completes no write-readiness event. It reports
// whether the socket is IPv6 (dual-stack, like net.ListenUDP's).
func bindRawUDP(ip netip.Addr, port int) (fd int, v6 bool, err error) {
	ip = ip.Unmap()
	family := syscall.AF_INET
	if ip.Is6() {
		family, v6 = syscall.AF_INET6, true
	}
	fd, err = syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if err != nil {
		return -1, false, err
	}
	var sa syscall.Sockaddr
	if v6 {
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0)
		sa = &syscall.SockaddrInet6{Port: port, Addr: ip.As16()}
	} else {
		sa = &syscall.SockaddrInet4{Port: port, Addr: ip.As4()}
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, false, err
	}
	return fd, v6, nil
}

// rawSendTo is sendto(2) of pkt to to on a socket of bindRawUDP, the
// address built on the stack: no allocation, no netpoller, and a full
// send buffer drops the datagram (EAGAIN) instead of waiting. It is a raw
// syscall (no entersyscall/exitsyscall handshake with the scheduler): a
// non-blocking UDP send returns within microseconds, so there is no P to
// hand off while it runs.
func rawSendTo(fd int, v6 bool, pkt []byte, to netip.AddrPort) error {
	if len(pkt) == 0 {
		return nil
	}
	var (
		p  unsafe.Pointer
		l  uintptr
		s4 syscall.RawSockaddrInet4
		s6 syscall.RawSockaddrInet6
	)
	port := to.Port()
	a := to.Addr()
	if !v6 {
		a = a.Unmap()
	}
	switch {
	case !v6 && a.Is4():
		s4.Family = syscall.AF_INET
		pb := (*[2]byte)(unsafe.Pointer(&s4.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		s4.Addr = a.As4()
		p, l = unsafe.Pointer(&s4), syscall.SizeofSockaddrInet4
	case v6:
		s6.Family = syscall.AF_INET6
		pb := (*[2]byte)(unsafe.Pointer(&s6.Port))
		pb[0], pb[1] = byte(port>>8), byte(port)
		s6.Addr = a.As16() // an IPv4 address becomes ::ffff:a.b.c.d
		p, l = unsafe.Pointer(&s6), syscall.SizeofSockaddrInet6
	default:
		return syscall.EAFNOSUPPORT // an IPv6 peer on an IPv4 socket
	}
	_, _, errno := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&pkt[0])), uintptr(len(pkt)), 0, uintptr(p), l)
	if errno != 0 {
		return errno
	}
	return nil
}

func closeRaw(fd int) { _ = syscall.Close(fd) }
