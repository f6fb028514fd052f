package sip

import (
	"bytes"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// lintFilter runs before sipgo's parser on every UDP datagram. sipgo drops
// messages it cannot parse without a word to the sender, who then
// retransmits for 32 s; RFC 3261 wants a 400 where a response can be
// routed. The check is a single allocation-free scan; only a message that
// fails it costs more (a log line and a 400 built from its raw headers).
func (a *Agent) lintFilter(conn net.PacketConn) sip.TransportReadFilter {
	return func(info sip.TransportReadProps, data []byte) ([]byte, error) {
		if info.Transport != "UDP" {
			return data, nil
		}
		problem, isRequest := lintMessage(data)
		if problem == "" {
			return data, nil
		}
		if ok, held := a.malformedLog.allow(time.Now()); ok {
			a.log.Warn("sip: malformed message dropped", "source", addrString(info.RemoteAddr), "problem", problem, "request", isRequest, "suppressed_before", held)
		}
		if isRequest {
			if res := badRequest(data, problem); res != nil && info.RemoteAddr != nil {
				if _, err := conn.WriteTo(res, info.RemoteAddr); err != nil {
					a.log.Debug("sip: 400 for malformed request not sent", "error", err)
				}
			}
		}
		return nil, nil
	}
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
	head := data
	var body []byte
	if end >= 0 {
		head, body = data[:end], data[end+sepLen:]
	}
	line, rest := nextLine(head)
	isRequest = !bytes.HasPrefix(line, []byte("SIP/"))
	if isRequest {
		if p := lintRequestLine(line); p != "" {
			return p, true
		}
	} else if len(line) < 12 || !bytes.HasPrefix(line, []byte("SIP/2.0 ")) || !allDigits(line[8:11]) {
		return "malformed status line", false
	}
	if end < 0 {
		return "no empty line after the headers", isRequest
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
			return "header line without a name and colon", isRequest
		}
		name := bytes.TrimRight(line[:colon], " \t")
		if !isToken(name) {
			return "invalid header name", isRequest
		}
		value := bytes.TrimSpace(line[colon+1:])
		switch {
		case hdrIs(name, "via", "v"):
			via = true
		case hdrIs(name, "from", "f"):
			from = true
		case hdrIs(name, "to", "t"):
			to = true
		case hdrIs(name, "call-id", "i"):
			callID = len(value) > 0
		case hdrIs(name, "cseq", ""):
			num, method, ok := bytes.Cut(value, []byte(" "))
			if !ok || !allDigits(num) || len(num) > 10 || !isToken(bytes.TrimSpace(method)) {
				return "malformed CSeq", isRequest
			}
			if n, _ := strconv.ParseUint(string(num), 10, 64); n > 1<<31-1 {
				return "CSeq number too large", isRequest
			}
			cseq = true
		case hdrIs(name, "content-length", "l"):
			if !allDigits(value) || len(value) > 9 {
				return "malformed Content-Length", isRequest
			}
			if n, _ := strconv.Atoi(string(value)); n > len(body) {
				return "Content-Length larger than the body", isRequest
			}
		}
	}
	switch {
	case !via:
		return "missing Via", isRequest
	case !from:
		return "missing From", isRequest
	case !to:
		return "missing To", isRequest
	case !callID:
		return "missing Call-ID", isRequest
	case !cseq:
		return "missing CSeq", isRequest
	}
	return "", isRequest
}

const problemVersion = "unsupported SIP version"

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
	head := data
	if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
		head = data[:end]
	}
	_, rest := nextLine(head)
	var out bytes.Buffer
	if problem == problemVersion {
		out.WriteString("SIP/2.0 505 Version Not Supported\r\n") // RFC 3261 section 8.1.1.1
	} else {
		out.WriteString("SIP/2.0 400 Bad Request (" + problem + ")\r\n")
	}
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
			hasVia = true
		case hdrIs(name, "from", "f"), hdrIs(name, "to", "t"), hdrIs(name, "call-id", "i"), hdrIs(name, "cseq", ""):
		default:
			continue
		}
		out.Write(line)
		out.WriteString("\r\n")
	}
	if !hasVia {
		return nil
	}
	out.WriteString("Server: Switchboard\r\nContent-Length: 0\r\n\r\n")
	return out.Bytes()
}
