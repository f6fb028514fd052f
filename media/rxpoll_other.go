//go:build !linux

package media

import (
	"errors"
	"net"
)

// Without epoll every endpoint keeps its own reader goroutines.
type rxPoller struct{}

func newRxPoller() (*rxPoller, error) { return nil, errors.New("media: no poller on this platform") }

func (p *rxPoller) add(c *net.UDPConn, e *Endpoint, rtcp bool) (int, error) {
	return -1, errors.New("media: no poller on this platform")
}
func (p *rxPoller) remove(fd int) {}
func (p *rxPoller) close()        {}

// drainSocket is never called here: only polled endpoints hand their
// sockets back to be kept.
func drainSocket(c *net.UDPConn) {}

// fdSoftLimit is 0 here: no sockets are kept (see drainSocket).
func fdSoftLimit() int { return 0 }
