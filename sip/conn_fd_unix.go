//go:build unix

package sip

import (
	"errors"
	"syscall"
)

// descriptorLimit is the soft RLIMIT_NOFILE. Go's runtime already raised
// it to the hard limit at start (Go 1.19+), so this is all the process
// can have.
func descriptorLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 1024
	}
	return rl.Cur
}

// descriptorsExhausted reports whether the process cannot open another
// socket now (the port pool reports any bind failure as "no free port").
func descriptorsExhausted() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
	}
	_ = syscall.Close(fd)
	return false
}

// raiseReadBuffer asks for a receive buffer of want bytes on a UDP
// socket and returns what the kernel granted (Linux reports double the
// usable size). The kernel caps SO_RCVBUF at net.core.rmem_max (212,992
// bytes on a stock Linux); a process with CAP_NET_ADMIN may go past it
// with SO_RCVBUFFORCE, which is tried when the cap bit.
func raiseReadBuffer(c syscall.Conn, want int) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	got := 0
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, want)
		got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		if got < want && soRcvbufForce != 0 {
			if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soRcvbufForce, want) == nil {
				got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			}
		}
	})
	return got
}
