package framework

import (
	"context"
	"log/slog"
	"sync"
)

// deferAttrs wraps a log handler so that Logger.With costs no formatting
// until a record is actually written: every call makes loggers with its
// call_id (and the SIP leg with its source), and most calls never log a
// line at the configured level, while slog's text and JSON handlers
// format the attributes into a buffer at With time. The attributes are
// handed to the wrapped handler's WithAttrs on the first record it
// handles, once per logger. Groups are passed on at once (rare).
func deferAttrs(h slog.Handler) slog.Handler {
	if _, ok := h.(*lazyAttrs); ok {
		return h
	}
	return &lazyAttrs{inner: h}
}

// lazyAttrs is deferAttrs's handler: inner plus attributes not yet
// given to it.
type lazyAttrs struct {
	inner   slog.Handler
	pending []slog.Attr

	once sync.Once
	h    slog.Handler // inner.WithAttrs(pending), made by the first Handle
}

func (l *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.inner.Enabled(ctx, level)
}

func (l *lazyAttrs) resolved() slog.Handler {
	if len(l.pending) == 0 {
		return l.inner
	}
	l.once.Do(func() { l.h = l.inner.WithAttrs(l.pending) })
	return l.h
}

func (l *lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.resolved().Handle(ctx, r)
}

func (l *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	all := make([]slog.Attr, 0, len(l.pending)+len(attrs))
	all = append(append(all, l.pending...), attrs...)
	return &lazyAttrs{inner: l.inner, pending: all}
}

func (l *lazyAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &lazyAttrs{inner: l.resolved().WithGroup(name)}
}
