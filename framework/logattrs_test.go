package framework

import (
	"bytes"
	"log/slog"
	"testing"
)

// countingHandler counts the WithAttrs calls that reach it.
type countingHandler struct {
	slog.Handler
	withAttrs *int
}

func (c countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	*c.withAttrs++
	return countingHandler{Handler: c.Handler.WithAttrs(as), withAttrs: c.withAttrs}
}

func (c countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{Handler: c.Handler.WithGroup(name), withAttrs: c.withAttrs}
}

// A logger behind deferAttrs writes exactly what the plain handler
// writes, and loggers made with With that never write a line at the
// enabled level cost the handler nothing: it formats their attributes on
// the first record only, once.
func TestDeferAttrs(t *testing.T) {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	for _, tc := range []struct {
		name  string
		log   func(l *slog.Logger)
		calls int // WithAttrs reaching the wrapped handler
	}{
		{"no line at the level", func(l *slog.Logger) {
			l.With("call_id", "c1", "source", "10.0.0.1:5060").With("leg_id", "l1").Info("sip: answered")
		}, 0},
		{"one line", func(l *slog.Logger) {
			l.With("call_id", "c1", "source", "10.0.0.1:5060").With("leg_id", "l1").Warn("sip: answer failed", "error", "x")
		}, 1},
		{"two lines, one logger", func(l *slog.Logger) {
			c := l.With("call_id", "c1")
			c.Warn("first", "n", 1)
			c.Error("second", "n", 2)
		}, 1},
		{"group", func(l *slog.Logger) {
			l.With("call_id", "c1").WithGroup("media").With("codec", "PCMU").Warn("stats", "lost", 3)
		}, 2},
		{"no attributes", func(l *slog.Logger) { l.Warn("plain", "k", "v") }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got bytes.Buffer
			tc.log(slog.New(slog.NewTextHandler(&want, opts)))
			n := 0
			tc.log(slog.New(deferAttrs(countingHandler{Handler: slog.NewTextHandler(&got, opts), withAttrs: &n})))
			if got.String() != want.String() {
				t.Fatalf("wrote\n%q\nwant\n%q", got.String(), want.String())
			}
			if n != tc.calls {
				t.Fatalf("%d WithAttrs reached the handler, want %d", n, tc.calls)
			}
		})
	}
	if h := deferAttrs(slog.NewTextHandler(&bytes.Buffer{}, nil)); deferAttrs(h) != h {
		t.Fatal("deferAttrs wrapped itself")
	}
}

func BenchmarkLoggerWithUnused(b *testing.B) {
	for _, wrapped := range []bool{false, true} {
		name := map[bool]string{false: "text", true: "deferred"}[wrapped]
		b.Run(name, func(b *testing.B) {
			var h slog.Handler = slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn})
			if wrapped {
				h = deferAttrs(h)
			}
			l := slog.New(h)
			b.ReportAllocs()
			for b.Loop() {
				l.With("call_id", "a84b4c76e66710@pc33.example.com", "source", "192.0.2.4:5060").Info("sip: incoming call", "user", "reflect")
			}
		})
	}
}
