package sip

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media"
)

// OnChat sets the callback for MESSAGE requests received in the leg's
// dialog. It runs on the request's goroutine and must not block.
func (l *Leg) OnChat(fn func(contentType, text string)) {
	l.mu.Lock()
	l.onChat = fn
	l.mu.Unlock()
}

// SendChat sends text as a MESSAGE inside the leg's dialog and waits for
// the final response.
func (l *Leg) SendChat(ctx context.Context, text string) error {
	if l.State() != LegAnswered {
		return errors.New("sip: chat on a leg that is not answered")
	}
	req := sip.NewRequest(sip.MESSAGE, l.remoteTarget())
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain;charset=UTF-8"))
	req.SetBody([]byte(text))
	if _, err := l.inDialog(ctx, req); err != nil {
		return fmt.Errorf("sip: MESSAGE: %w", err)
	}
	return nil
}

func (a *Agent) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		if req.To() != nil {
			if _, tagged := req.To().Params.Get("tag"); tagged {
				a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
				return
			}
		}
		a.onPagerMessage(req, tx)
		return
	}
	ct := "text/plain"
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	if !strings.HasPrefix(strings.ToLower(ct), "text/") {
		a.respond(req, tx, 415, "Unsupported Media Type")
		return
	}
	if len(req.Body()) > 64*1024 {
		a.respond(req, tx, 413, "Request Entity Too Large")
		return
	}
	a.respond(req, tx, 200, "OK")
	l.mu.Lock()
	fn := l.onChat
	l.mu.Unlock()
	if fn != nil {
		fn(ct, string(req.Body()))
	}
}

// onInfo handles INFO inside a dialog: DTMF as application/dtmf-relay
// ("Signal=5\r\nDuration=160") or application/dtmf ("5"), and
// application signals as application/json (signal.go). Other packages
// are answered 415 (RFC 6086 wants 469 for unknown Info-Packages, but the
// legacy DTMF INFO has none).
func (a *Agent) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	l := a.findLeg(req)
	if l == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]))
	}
	if len(req.Body()) == 0 {
		a.respond(req, tx, 200, "OK") // keep-alive INFO
		return
	}
	digit, dur, ok := rune(0), time.Duration(0), false
	switch ct {
	case "application/dtmf-relay":
		digit, dur, ok = parseDTMFRelay(string(req.Body()))
	case "application/dtmf":
		s := strings.TrimSpace(string(req.Body()))
		if len(s) == 1 {
			_, ok = media.DTMFCode(rune(s[0]))
			digit = rune(s[0])
		} else if n, err := strconv.Atoi(s); err == nil && n >= 10 && n <= 15 {
			digit, ok = media.DTMFDigit(uint8(n)), true
		}
	case SignalContentType:
		a.onSignalInfo(l, req, tx)
		return
	default:
		a.respond(req, tx, 415, "Unsupported Media Type")
		return
	}
	if !ok {
		l.log.Warn("sip: malformed DTMF INFO", "body", string(req.Body()))
		a.respond(req, tx, 400, "Bad Request (DTMF body)")
		return
	}
	a.respond(req, tx, 200, "OK")
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	l.ep.InjectDTMF(media.DTMFEvent{Digit: digit, Duration: dur, Source: "info"})
}

// parseDTMFRelay reads "Signal=5\r\nDuration=160" (Cisco's format, which
// every PBX copies). Signal may also be 10 for * and 11 for #.
func parseDTMFRelay(body string) (rune, time.Duration, bool) {
	var digit rune
	var dur time.Duration
	for _, line := range strings.Split(body, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "signal":
			switch {
			case v == "10":
				digit = '*'
			case v == "11":
				digit = '#'
			case len(v) == 1:
				if _, ok := media.DTMFCode(rune(v[0])); ok {
					digit = rune(v[0])
				}
			}
		case "duration":
			if ms, err := strconv.Atoi(v); err == nil && ms >= 0 && ms < 60000 {
				dur = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return digit, dur, digit != 0
}
