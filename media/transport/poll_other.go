//go:build !linux

package transport

import "errors"

// Without epoll every UDP transport keeps its own reader goroutines.
type rxPoller struct{}

func newRxPoller() (*rxPoller, error) {
	return nil, errors.New("transport: no poller on this platform")
}

func (p *rxPoller) add(fd int, u *UDP, rtcp bool) error {
	return errors.New("transport: no poller on this platform")
}
func (p *rxPoller) remove(fd int)                 {}
func (p *rxPoller) park(fds [2]int) bool          { return false }
func (p *rxPoller) adopt(fds [2]int, u *UDP) bool { return false }
func (p *rxPoller) forget(fds [2]int)             {}
func (p *rxPoller) close()                        {}

// drainSocket is never called here: only polled transports (raw
// sockets, Linux) hand their sockets back to be kept.
func drainSocket(fd int) {}

// fdSoftLimit is 0 here: no sockets are kept (see drainSocket).
func fdSoftLimit() int { return 0 }
