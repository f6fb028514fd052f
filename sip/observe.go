package sip

import (
	"bytes"
	"net"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Observer is told what the agent does, for monitoring (framework feeds
// it to Prometheus). Its methods run on signaling goroutines — once per
// SIP message or call, never per RTP packet — and must be cheap and never
// block. A nil Config.Observer costs nothing.
type Observer interface {
	// Message reports a SIP message read from or written to the agent's
	// sockets: status is 0 for a request and the status code for a
	// response; method is the request's method or, for a response, its
	// CSeq method. Retransmissions count again.
	Message(dir MessageDirection, method Method, status int)
	// InviteRejected reports an initial INVITE refused before a call was
	// created, by admission control or for lack of resources.
	InviteRejected(reason RejectReason)
	// CallAnswered reports an inbound call whose 2xx was sent and ACKed;
	// setup is the time from receiving the INVITE to that point.
	CallAnswered(setup time.Duration)
}

// MessageDirection says whether a SIP message was received or sent.
type MessageDirection uint8

// The directions of a SIP message.
const (
	MessageIn MessageDirection = iota
	MessageOut
)

// String returns "in" or "out".
func (d MessageDirection) String() string {
	if d == MessageOut {
		return "out"
	}
	return "in"
}

// Method is a SIP method from a fixed set (so that metrics labelled by it
// stay bounded whatever arrives from the network).
type Method uint8

// The SIP methods we tell apart; anything else is MethodOther.
const (
	MethodOther Method = iota
	MethodInvite
	MethodAck
	MethodBye
	MethodCancel
	MethodOptions
	MethodRegister
	MethodInfo
	MethodMessage
	MethodRefer
	MethodNotify
	MethodUpdate
	MethodSubscribe
	MethodPrack
	MethodPublish
	// NumMethods is the number of Method values (for tables indexed by
	// Method).
	NumMethods
)

var methodNames = [NumMethods]string{"other", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "MESSAGE", "REFER", "NOTIFY", "UPDATE", "SUBSCRIBE", "PRACK", "PUBLISH"}

// String returns the method's name ("other" for MethodOther).
func (m Method) String() string {
	if m < NumMethods {
		return methodNames[m]
	}
	return "other"
}

// parseMethod maps a method token to a Method without allocating.
func parseMethod(b []byte) Method {
	switch string(b) {
	case "INVITE":
		return MethodInvite
	case "ACK":
		return MethodAck
	case "BYE":
		return MethodBye
	case "CANCEL":
		return MethodCancel
	case "OPTIONS":
		return MethodOptions
	case "REGISTER":
		return MethodRegister
	case "INFO":
		return MethodInfo
	case "MESSAGE":
		return MethodMessage
	case "REFER":
		return MethodRefer
	case "NOTIFY":
		return MethodNotify
	case "UPDATE":
		return MethodUpdate
	case "SUBSCRIBE":
		return MethodSubscribe
	case "PRACK":
		return MethodPrack
	case "PUBLISH":
		return MethodPublish
	}
	return MethodOther
}

// RejectReason says why an initial INVITE was refused before it became a
// call.
type RejectReason uint8

// The reasons an INVITE is refused by admission control or for lack of
// resources.
const (
	// RejectPending: too many INVITE transactions in progress
	// (OverloadOptions.MaxPendingInvites).
	RejectPending RejectReason = iota
	// RejectCalls: too many inbound calls (OverloadOptions.MaxCalls).
	RejectCalls
	// RejectNoPorts: the RTP port pool is exhausted.
	RejectNoPorts
	// RejectShuttingDown: the agent is closing.
	RejectShuttingDown
	// RejectPacerOverrun: the media pacer overran its 20 ms tick recently
	// (OverloadOptions.PacerOverrunHold).
	RejectPacerOverrun
	// RejectSourceCalls: the source holds its limit of concurrent calls
	// (CallLimits.GuestCalls / UserCalls).
	RejectSourceCalls
	// RejectSourceRate: the source starts guest calls faster than
	// CallLimits.GuestRate.
	RejectSourceRate
	// RejectGuestShare: guests from all sources hold CallLimits.GuestShare
	// of the RTP ports.
	RejectGuestShare
	// RejectSchedLatency: the Go scheduler's queueing delay is above
	// OverloadOptions.MaxSchedLatency (refused in the read loop, shed.go).
	RejectSchedLatency
	// RejectReadDelay: datagrams wait in the SIP UDP socket's receive
	// queue longer than OverloadOptions.MaxReadDelay (refused in the read
	// loop, readdelay.go).
	RejectReadDelay
	// NumRejectReasons is the number of RejectReason values.
	NumRejectReasons
)

// String returns the reason as a metric label value.
func (r RejectReason) String() string {
	switch r {
	case RejectPending:
		return "pending_invites"
	case RejectCalls:
		return "max_calls"
	case RejectNoPorts:
		return "no_ports"
	case RejectShuttingDown:
		return "shutting_down"
	case RejectPacerOverrun:
		return "pacer_overrun"
	case RejectSourceCalls:
		return "source_calls"
	case RejectSourceRate:
		return "source_rate"
	case RejectGuestShare:
		return "guest_share"
	case RejectSchedLatency:
		return "sched_latency"
	case RejectReadDelay:
		return "read_delay"
	}
	return "other"
}

// classifyMessage reads the start line of a raw SIP message (and, for a
// response, its CSeq method). ok is false for anything that is not a
// well-formed start line (keep-alives, a body written separately).
// It does not allocate.
func classifyMessage(data []byte) (method Method, status int, ok bool) {
	eol := bytes.IndexByte(data, '\n')
	if eol < 0 {
		return 0, 0, false
	}
	line := bytes.TrimRight(data[:eol], "\r")
	if bytes.HasPrefix(line, []byte("SIP/2.0 ")) {
		if len(line) < 11 {
			return 0, 0, false
		}
		for _, c := range line[8:11] {
			if c < '0' || c > '9' {
				return 0, 0, false
			}
			status = status*10 + int(c-'0')
		}
		if status < 100 || status > 699 {
			return 0, 0, false
		}
		return cseqMethod(data[eol+1:]), status, true
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !bytes.HasSuffix(line, []byte(" SIP/2.0")) {
		return 0, 0, false
	}
	return parseMethod(line[:sp]), 0, true
}

// cseqMethod finds the CSeq header among headers and returns its method.
func cseqMethod(headers []byte) Method {
	for len(headers) > 0 {
		eol := bytes.IndexByte(headers, '\n')
		line := headers
		if eol >= 0 {
			line, headers = headers[:eol], headers[eol+1:]
		} else {
			headers = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of headers
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || !bytes.EqualFold(bytes.TrimSpace(line[:colon]), []byte("CSeq")) {
			continue
		}
		v := bytes.TrimSpace(line[colon+1:]) // "number method"
		i := 0
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		if i == 0 {
			return MethodOther
		}
		return parseMethod(bytes.TrimSpace(v[i:]))
	}
	return MethodOther
}

// observer returns the configured Observer or one that does nothing.
func (a *Agent) observer() Observer {
	if a.cfg.Observer != nil {
		return a.cfg.Observer
	}
	return nopObserver{}
}

type nopObserver struct{}

func (nopObserver) Message(MessageDirection, Method, int) {}
func (nopObserver) InviteRejected(RejectReason)           {}
func (nopObserver) CallAnswered(time.Duration)            {}

func observeMessage(o Observer, dir MessageDirection, data []byte) {
	if m, st, ok := classifyMessage(data); ok {
		o.Message(dir, m, st)
	}
}

// countingPacketConn reports every datagram it sends to the Observer
// (received ones are seen by the read filter, which covers every
// transport).
type countingPacketConn struct {
	net.PacketConn
	obs Observer
}

func (c *countingPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		observeMessage(c.obs, MessageOut, b)
	}
	return n, err
}

// countingListener wraps accepted stream connections so that what we
// write on them is reported (sipgo writes one message per Write).
type countingListener struct {
	net.Listener
	obs Observer
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, obs: l.obs}, nil
}

type countingConn struct {
	net.Conn
	obs Observer
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil {
		observeMessage(c.obs, MessageOut, b)
	}
	return n, err
}

// countingReadFilter reports every message read, on any transport, then
// hands it to next. On stream transports (TCP, TLS, WebSocket) a read that
// carries several messages counts as its first.
func (a *Agent) countingReadFilter(next sip.TransportReadFilter) sip.TransportReadFilter {
	obs := a.cfg.Observer
	if obs == nil {
		return next
	}
	return func(info sip.TransportReadProps, data []byte) ([]byte, error) {
		observeMessage(obs, MessageIn, data)
		return next(info, data)
	}
}

// rejectReason maps a per-source admission refusal to its metric reason.
func (r Refusal) rejectReason() RejectReason {
	switch r {
	case CallRateTooHigh:
		return RejectSourceRate
	case TooManyGuests:
		return RejectGuestShare
	}
	return RejectSourceCalls
}
