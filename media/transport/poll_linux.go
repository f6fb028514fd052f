//go:build linux

package transport

import (
	"errors"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"
)

// rxPoller reads the RTP and RTCP sockets of many UDP transports from one
// goroutine blocked in epoll_wait, instead of a goroutine per socket
// parked in Go's netpoller. With one packet per socket every 20 ms, the
// per-socket goroutine costs a wake-up and a context switch per packet
// (about a quarter of the CPU of forwarding one, see docs/BENCHMARKS.md);
// here one wake-up serves every socket that became readable, and no
// goroutine stack is kept per socket. Readers holds one poller per shard
// of the media Pacer.
type rxPoller struct {
	epfd   int
	wakeR  int // read end of the pipe Close writes to
	wakeW  int
	mu     sync.RWMutex // held (read) while a batch of events is handled
	socks  []pollSock   // indexed by descriptor (small integers): no hashing per packet
	closed bool
	done   chan struct{}
}

type pollSock struct {
	u    *UDP
	rtcp bool
	// parked: a released socket the PortPool keeps bound while its port
	// rests (KeepSockets). It stays in the epoll set, and whatever
	// arrives is read and dropped here (the old call's strays), so
	// handing it to the next call (adopt) and parking it again cost no
	// epoll_ctl and no draining reads.
	parked bool
}

func newRxPoller() (*rxPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}); err != nil {
		syscall.Close(epfd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, err
	}
	rp := &rxPoller{epfd: epfd, wakeR: p[0], wakeW: p[1], done: make(chan struct{})}
	go rp.loop()
	return rp, nil
}

// add starts reading fd, a non-blocking socket, for u (rtcp: it is u's
// RTCP socket).
func (p *rxPoller) add(fd int, u *UDP, rtcp bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("transport: poller closed")
	}
	if fd < 0 || fd > 1<<24 {
		return errors.New("transport: descriptor out of range")
	}
	if fd >= len(p.socks) {
		p.socks = append(p.socks, make([]pollSock, fd+1-len(p.socks))...)
	}
	p.socks[fd] = pollSock{u: u, rtcp: rtcp}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
		p.socks[fd] = pollSock{}
		return err
	}
	return nil
}

// remove stops reading fd. When it returns the poller is not inside a
// handler of that socket and never will be again, so the socket may be
// closed (and its number reused).
func (p *rxPoller) remove(fd int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fd < 0 || fd >= len(p.socks) || (p.socks[fd].u == nil && !p.socks[fd].parked) {
		return
	}
	p.socks[fd] = pollSock{}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
}

// park keeps fds (a transport's sockets, read by this poller; the RTCP
// one -1 when RTCP shares the RTP socket) in the epoll set with no
// transport: what arrives is dropped. When it returns the poller is not
// inside a handler of the old transport and never will be again. It
// reports false (and parks nothing) once the poller is closed.
func (p *rxPoller) park(fds [2]int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || fds[0] < 0 {
		return false
	}
	for _, fd := range fds {
		if fd >= 0 && (fd >= len(p.socks) || p.socks[fd].u == nil) {
			return false
		}
	}
	for _, fd := range fds {
		if fd >= 0 {
			p.socks[fd] = pollSock{parked: true}
		}
	}
	return true
}

// adopt hands parked sockets (park) to u, RTP then RTCP (-1: none): no
// system call. It reports false when they are not parked here (the
// caller adds them).
func (p *rxPoller) adopt(fds [2]int, u *UDP) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || fds[0] < 0 {
		return false
	}
	for _, fd := range fds {
		if fd >= 0 && (fd >= len(p.socks) || !p.socks[fd].parked) {
			return false
		}
	}
	p.socks[fds[0]] = pollSock{u: u}
	if fds[1] >= 0 {
		p.socks[fds[1]] = pollSock{u: u, rtcp: true}
	}
	return true
}

// forget drops parked sockets about to be closed (closing a descriptor
// takes it out of the epoll set; no epoll_ctl needed).
func (p *rxPoller) forget(fds [2]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, fd := range fds {
		if fd >= 0 && fd < len(p.socks) && p.socks[fd].parked {
			p.socks[fd] = pollSock{}
		}
	}
}

// close stops the poller's goroutine; sockets still registered are no
// longer read.
func (p *rxPoller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wakeW, []byte{1})
	<-p.done
	syscall.Close(p.epfd)
	syscall.Close(p.wakeR)
	syscall.Close(p.wakeW)
}

func (p *rxPoller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 1500)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		p.mu.RLock()
		if p.closed {
			p.mu.RUnlock()
			return
		}
		for i := range n {
			fd := int(events[i].Fd)
			if fd >= len(p.socks) {
				continue // the wake-up pipe
			}
			s := p.socks[fd]
			if s.parked {
				_, _, _ = recvFrom(fd, buf) // a stray for a call that has ended
				continue
			}
			if s.u == nil {
				continue // the wake-up pipe, or removed since epoll_wait
			}
			// One datagram per ready socket and wake-up: the set is
			// level-triggered, so a socket with more queued is reported
			// again by the next epoll_wait (no read that only learns
			// EAGAIN, and a flooded socket cannot starve the others).
			m, from, errno := recvFrom(fd, buf)
			if errno != 0 {
				continue // EAGAIN (another reader?), or an ICMP error: transient on UDP
			}
			if s.rtcp {
				s.u.handleRTCP(buf[:m], from, true)
			} else {
				s.u.handleRTP(buf[:m], from)
			}
		}
		p.mu.RUnlock()
	}
}

// recvFrom is recvfrom(2) without blocking and without allocating (the
// syscall package returns the source as a fresh Sockaddr). Like
// rawSendTo it is a raw syscall: MSG_DONTWAIT returns at once.
func recvFrom(fd int, buf []byte) (int, netip.AddrPort, syscall.Errno) {
	var rsa syscall.RawSockaddrAny
	l := uint32(syscall.SizeofSockaddrAny)
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		syscall.MSG_DONTWAIT, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&l)))
	if errno != 0 {
		return 0, netip.AddrPort{}, errno
	}
	var from netip.AddrPort
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(pb[0])<<8|uint16(pb[1]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		pb := (*[2]byte)(unsafe.Pointer(&sa.Port))
		from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(pb[0])<<8|uint16(pb[1]))
	}
	return int(n), from, 0
}

// drainSocket discards the datagrams queued on a raw socket (a kept
// socket's strays from its rest time) without blocking.
func drainSocket(fd int) {
	var buf [1500]byte
	for range 4096 { // bounded: a flood cannot keep us here
		if _, _, err := syscall.Recvfrom(fd, buf[:], syscall.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

// fdSoftLimit is the process's descriptor limit (RLIMIT_NOFILE), 0 if
// unknown.
func fdSoftLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(min(rl.Cur, 1<<30))
}
