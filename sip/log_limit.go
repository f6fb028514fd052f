package sip

import (
	"context"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"
)

// Log lines about network input are bounded twice: in count (logThrottle:
// a flood of garbage writes at most a burst of lines a second) and in
// size (printable: at most a short, escaped prefix of what arrived).

// printable returns at most max bytes of b as text a log can carry: control
// characters and invalid UTF-8 escaped, "…" (and the full length) when cut.
func printable(b []byte, max int) string {
	cut := len(b) > max
	if cut {
		b = b[:max]
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && size <= 1:
			out = append(out, `\x`...)
			out = append(out, "0123456789abcdef"[b[0]>>4], "0123456789abcdef"[b[0]&15])
		case r < 0x20 || r == 0x7f:
			q := strconv.QuoteRune(r)
			out = append(out, q[1:len(q)-1]...)
		default:
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	if cut {
		out = append(out, "…"...)
	}
	return string(out)
}

// limitedHandler is the slog.Handler the agent gives sipgo's transport and
// transaction layers: lines at Warn and above share one rate limit (burst
// per second, then one line saying how many were held back), and every
// string attribute is cut to 200 bytes and escaped, so sipgo's "failed to
// parse" lines no longer carry a whole binary message each.
type limitedHandler struct {
	next     slog.Handler
	throttle *logThrottle
}

// NewLimitedHandler wraps next so that lines at Warn and above pass at
// most burst a second (then one line says how many were held back), with
// every string attribute cut to 200 bytes and escaped. The agent logs
// sipgo's transport and transaction layers through one; give sipgo's
// package-wide logger (sipgo/sip.SetDefaultLogger) one too.
func NewLimitedHandler(next slog.Handler, burst int) slog.Handler {
	return &limitedHandler{next: next, throttle: &logThrottle{interval: time.Second, burst: burst}}
}

func (h *limitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		ok, held := h.throttle.allow(r.Time)
		if !ok {
			return nil
		}
		if held > 0 {
			r.AddAttrs(slog.Int("suppressed_before", held))
		}
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(limitAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func limitAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); len(s) > 200 || !printableString(s) {
			return slog.String(a.Key, printable([]byte(s), 200))
		}
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, printable([]byte(err.Error()), 200))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func printableString(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return false
		}
	}
	return true
}

func (h *limitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	lim := make([]slog.Attr, len(as))
	for i, a := range as {
		lim[i] = limitAttr(a)
	}
	return &limitedHandler{next: h.next.WithAttrs(lim), throttle: h.throttle}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{next: h.next.WithGroup(name), throttle: h.throttle}
}
