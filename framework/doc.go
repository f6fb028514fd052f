// Package framework is Switchboard's application layer: a Server that
// routes incoming calls to handlers, one actor per call that owns all of
// the call's state, one actor per leg, and the Call API that call flows use
// — Answer, Play, CollectDigits, Hangup and the call's event stream.
//
// A call flow is an ordinary Go function:
//
//	func(ctx context.Context, c *framework.Call) error
//
// It runs in its own goroutine and talks to the call actor by request and
// response; every verb blocks until done, honours ctx, and returns an error
// that satisfies errors.Is(err, ErrHangup) once the caller has hung up.
package framework
