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
