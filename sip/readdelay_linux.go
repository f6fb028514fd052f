package sip

import (
	"net"
	"net/netip"
	"syscall"
	"time"
	"unsafe"
)

// timedConn is the UDP listener as the read loop reads it: each datagram
// with its kernel receive timestamp, whose age feeds readDelay.
type timedConn struct {
	*net.UDPConn
	delay *readDelay
	oob   [8]uint64 // the control message (aligned for Cmsghdr); the read loop's only
}

// withReadDelay turns on receive timestamps on uc and returns it wrapped
// so that its reads feed d; uc itself if the kernel refuses them.
func withReadDelay(uc *net.UDPConn, d *readDelay) net.PacketConn {
	rc, err := uc.SyscallConn()
	if err != nil {
		return uc
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RXQ_OVFL, 1)
		}
	}); err != nil || serr != nil {
		return uc
	}
	return &timedConn{UDPConn: uc, delay: d}
}

// ReadFrom reads a datagram as net.UDPConn.ReadFrom does (the same
// address form: IPv4 senders on a dual-stack socket as plain IPv4) and
// notes how long it waited.
func (c *timedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if hook := c.delay.testHookRead.Load(); hook != nil {
		(*hook)()
	}
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c.oob[0])), len(c.oob)*8)
	n, oobn, _, ap, err := c.UDPConn.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		return n, nil, err
	}
	if ts, drops, ok := readCmsgs(oob[:oobn]); ok {
		now := time.Now().UnixNano()
		c.delay.observe(now, now-ts)
		c.delay.observeDrops(now, drops)
	}
	return n, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
}

// readCmsgs reads the control messages of a datagram (as the kernel
// wrote them: aligned): its receive time in UnixNano (SCM_TIMESTAMPNS;
// ok is false without it) and the socket's drop count (SO_RXQ_OVFL; the
// kernel leaves it out while the count is zero).
func readCmsgs(oob []byte) (ts int64, drops uint32, ok bool) {
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET {
			switch {
			case h.Type == syscall.SCM_TIMESTAMPNS && l >= syscall.SizeofCmsghdr+int(unsafe.Sizeof(syscall.Timespec{})):
				ts, ok = (*syscall.Timespec)(unsafe.Pointer(&oob[syscall.SizeofCmsghdr])).Nano(), true
			case h.Type == syscall.SO_RXQ_OVFL && l >= syscall.SizeofCmsghdr+4:
				drops = *(*uint32)(unsafe.Pointer(&oob[syscall.SizeofCmsghdr]))
			}
		}
		next := syscall.CmsgSpace(l - syscall.SizeofCmsghdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return ts, drops, ok
}
