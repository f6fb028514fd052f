package sip

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// lintFilter runs before sipgo's parser on every UDP datagram and every
// WebSocket message (TCP and TLS are framed and checked by guardConn).
// sipgo drops messages it cannot parse without a word to the sender, who
// then retransmits for 32 s; RFC 3261 wants a 400 where a response can be
// routed. The check is a single allocation-free scan; only a message that
// fails it costs more (a log line and a 400 built from its raw headers).
func (a *Agent) lintFilter(conn net.PacketConn) sip.TransportReadFilter {
	var peers udpPeers // the read loop's own: only it calls this filter
	return func(info sip.TransportReadProps, data []byte) ([]byte, error) {
		if info.Transport != "UDP" && info.Transport != "WS" {
			return data, nil
		}
		var h rawHead
		problem, isRequest := lintMessageInto(data, &h)
		if problem == "" && isRequest && a.earlyShed(info, conn, data, &h) {
			return nil, nil
		}
		if problem == "" && isRequest && info.Transport == "UDP" && (a.takeAck(&h) || a.takeBye(info, conn, data, &h) || a.takeInvite(info, conn, data, &h, &peers)) {
			return nil, nil
		}
		if problem == "" {
			if info.Transport == "WS" && len(bytes.TrimSpace(data)) > 0 {
				if c := a.guard.wsConn(addrString(info.RemoteAddr)); c != nil {
					c.noteMessage()
				}
			}
			return data, nil
		}
		if ok, held := a.malformedLog.allow(time.Now()); ok {
			line, _ := nextLine(data)
			a.log.Warn("sip: malformed message dropped", "transport", info.Transport, "source", addrString(info.RemoteAddr), "problem", problem,
				"request", isRequest, "start", printable(line, 80), "suppressed_before", held)
		}
		if isRequest {
			if res := badRequest(data, problem); res != nil && info.RemoteAddr != nil {
				if err := a.sendRaw(info, conn, res); err != nil {
					a.log.Debug("sip: 400 for malformed request not sent", "error", err)
				}
			}
		}
		return nil, nil
	}
}

// sendRaw sends a stateless response back where a message came from: a
// datagram, or a frame on its WebSocket connection.
func (a *Agent) sendRaw(info sip.TransportReadProps, udp net.PacketConn, res []byte) error {
	if info.Transport == "UDP" {
		_, err := udp.WriteTo(res, info.RemoteAddr)
		return err
	}
	c, err := a.ua.TransportLayer().GetConnection(info.Transport, info.RemoteAddr.String())
	if err != nil {
		return err
	}
	w, ok := c.(io.Writer)
	if !ok {
		return fmt.Errorf("sip: %s connection cannot be written", info.Transport)
	}
	_, err = w.Write(res)
	return err
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// lintMessage checks the framing of a SIP message: start line, header lines,
// the headers every request needs, and Content-Length against the body. It
// returns "" for a message fit for the parser.
func lintMessage(data []byte) (problem string, isRequest bool) {
	return lintMessageInto(data, nil)
}

// lintMessageInto is lintMessage that also fills h (when not nil) with
// the raw header values the early shedding reads (shed.go); they point
// into data.
func lintMessageInto(data []byte, h *rawHead) (problem string, isRequest bool) {
	// Keep-alives (CRLF) are fine.
	if len(bytes.TrimSpace(data)) == 0 {
		return "", false
	}
	end := bytes.Index(data, []byte("\r\n\r\n"))
	sepLen := 4
	if end < 0 {
		end = bytes.Index(data, []byte("\n\n"))
		sepLen = 2
	}
	if end < 0 {
		line, _ := nextLine(data)
		problem, isRequest = lintStartLine(line)
		if problem == "" {
			problem = "no empty line after the headers"
		}
		return problem, isRequest
	}
	problem, isRequest, contentLength := lintHeadInto(data[:end], h)
	if problem == "" && contentLength > len(data)-end-sepLen {
		problem = problemShortBody
	}
	return problem, isRequest
}

// problemShortBody is the lint problem of a message whose body is shorter
// than its Content-Length.
const problemShortBody = "Content-Length larger than the body"

// lintStartLine checks a request or status line.
func lintStartLine(line []byte) (problem string, isRequest bool) {
	if !bytes.HasPrefix(line, []byte("SIP/")) {
		return lintRequestLine(line), true
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("SIP/2.0 ")) || !allDigits(line[8:11]) {
		return "malformed status line", false
	}
	return "", false
}

// lintHead checks a message's start line and headers (head holds them
// without the empty line that ends them). contentLength is -1 when the
// message has no Content-Length header.
func lintHead(head []byte) (problem string, isRequest bool, contentLength int) {
	return lintHeadInto(head, nil)
}

// rawHead is what the early shedding (shed.go), takeAck (ack_fast.go)
// and takeBye (bye_fast.go) need of a request, read during the lint pass
// so the message is scanned once: slices of the message itself, valid
// while it is.
type rawHead struct {
	method  []byte // request method; nil for a response
	callID  []byte
	cseqNum []byte // CSeq sequence number (digits)
	toTag   []byte // the To header's tag parameter; nil when it has none
	fromTag []byte // the From header's tag parameter; nil when it has none
	topVia  []byte // the first Via header line's value
}

func lintHeadInto(head []byte, h *rawHead) (problem string, isRequest bool, contentLength int) {
	contentLength = -1
	line, rest := nextLine(head)
	if problem, isRequest = lintStartLine(line); problem != "" {
		return problem, isRequest, contentLength
	}
	if h != nil && isRequest {
		h.method, _, _ = bytes.Cut(line, []byte(" "))
	}
	var via, from, to, callID, cseq bool
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // folded continuation of the previous header
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return "header line without a name and colon", isRequest, contentLength
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !isToken(name) {
			return "invalid header name", isRequest, contentLength
		}
		value := bytes.TrimSpace(line[colon+1:])
		switch {
		case hdrIs(name, "via", "v"):
			if h != nil && !via {
				h.topVia = value
			}
			via = true
		case hdrIs(name, "from", "f"):
			from = true
			if h != nil {
				h.fromTag = headerTag(value)
			}
		case hdrIs(name, "to", "t"):
			to = true
			if h != nil {
				h.toTag = headerTag(value)
			}
		case hdrIs(name, "call-id", "i"):
			callID = len(value) > 0
			if h != nil {
				h.callID = value
			}
		case hdrIs(name, "cseq", ""):
			num, method, ok := bytes.Cut(value, []byte(" "))
			if !ok || !allDigits(num) || len(num) > 10 || !isToken(bytes.TrimSpace(method)) {
				return "malformed CSeq", isRequest, contentLength
			}
			if n, _ := strconv.ParseUint(string(num), 10, 64); n > 1<<31-1 {
				return "CSeq number too large", isRequest, contentLength
			}
			cseq = true
			if h != nil {
				h.cseqNum = num
			}
		case hdrIs(name, "content-length", "l"):
			if !allDigits(value) || len(value) > 9 {
				return "malformed Content-Length", isRequest, contentLength
			}
			n, _ := strconv.Atoi(string(value))
			if contentLength >= 0 && n != contentLength {
				return "conflicting Content-Length headers", isRequest, contentLength
			}
			contentLength = n
		}
	}
	switch {
	case !via:
		return "missing Via", isRequest, contentLength
	case !from:
		return "missing From", isRequest, contentLength
	case !to:
		return "missing To", isRequest, contentLength
	case !callID:
		return "missing Call-ID", isRequest, contentLength
	case !cseq:
		return "missing CSeq", isRequest, contentLength
	}
	return "", isRequest, contentLength
}

const (
	problemVersion  = "unsupported SIP version"
	problemTooLarge = "message too large"
)

func lintRequestLine(line []byte) string {
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || !isToken(method) {
		return "malformed request line"
	}
	uri, version, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(uri) == 0 || bytes.IndexByte(uri, ':') <= 0 {
		return "malformed request URI"
	}
	if !bytes.Equal(version, []byte("SIP/2.0")) {
		return problemVersion
	}
	return ""
}

func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimRight(b, "\r"), nil
	}
	return bytes.TrimRight(b[:i], "\r"), b[i+1:]
}

func hdrIs(name []byte, long, compact string) bool {
	return bytes.EqualFold(name, []byte(long)) || (compact != "" && bytes.EqualFold(name, []byte(compact)))
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isToken reports whether b is an RFC 3261 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

// badRequest builds a stateless 400 from the raw headers of a request the
// parser would refuse: its Via, From, To, Call-ID and CSeq lines are copied.
// Without a Via there is nowhere to send it, and nil is returned.
func badRequest(data []byte, problem string) []byte {
	var status string
	switch problem {
	case problemVersion:
		status = "SIP/2.0 505 Version Not Supported\r\n" // RFC 3261 section 8.1.1.1
	case problemTooLarge:
		status = "SIP/2.0 513 Message Too Large\r\n" // RFC 3261 section 21.5.11
	default:
		status = "SIP/2.0 400 Bad Request (" + problem + ")\r\n"
	}
	out, ok := appendStatelessHead(append(make([]byte, 0, 512), status...), data, false, nil)
	if !ok {
		return nil
	}
	return append(out, "Server: Switchboard\r\nContent-Length: 0\r\n\r\n"...)
}

// appendStatelessHead appends to out (a status line) the header lines a
// stateless response copies from the raw request data: Via, From, To,
// Call-ID and CSeq. toTag, when not nil, is appended to the To line as
// its tag. ok is false without a Via (nowhere to send the response) and,
// with strictVia, when a Via does not look like one (plausibleVia).
func appendStatelessHead(out, data []byte, strictVia bool, toTag []byte) (_ []byte, ok bool) {
	head := data
	if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
		head = data[:end]
	}
	_, rest := nextLine(head)
	hasVia := false
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		switch {
		case hdrIs(name, "via", "v"):
			if strictVia && !plausibleVia(line[colon+1:]) {
				return out, false
			}
			hasVia = true
		case hdrIs(name, "to", "t"):
			out = append(out, line...)
			if toTag != nil {
				out = append(out, ";tag="...)
				out = append(out, toTag...)
			}
			out = append(out, "\r\n"...)
			continue
		case hdrIs(name, "from", "f"), hdrIs(name, "call-id", "i"), hdrIs(name, "cseq", ""):
		default:
			continue
		}
		out = append(out, line...)
		out = append(out, "\r\n"...)
	}
	return out, hasVia
}
