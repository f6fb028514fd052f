package media

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"
)

// PanicWhere says which user code on the media path panicked.
type PanicWhere uint8

// Places on the media path where an endpoint runs code it was given.
const (
	PanicSource PanicWhere = iota + 1 // a Source's ReadFrame (a playback)
	PanicSink                         // a Sink's WriteFrame (Listen, recorders, taps)
	PanicDTMF                         // the OnDTMF callback
)

// String names the place, as in "panic in source".
func (w PanicWhere) String() string {
	switch w {
	case PanicSource:
		return "source"
	case PanicSink:
		return "sink"
	case PanicDTMF:
		return "dtmf callback"
	}
	return fmt.Sprintf("PanicWhere(%d)", uint8(w))
}

// PanicError is a panic recovered from user code on the media path.
type PanicError struct {
	Where PanicWhere
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("media: panic in %s: %v", e.Where, e.Value)
}

// OnPanic sets the callback told when a Source, Sink or DTMF callback of
// this endpoint panics. Endpoints run user code on goroutines shared with
// other endpoints (the Pacer's shards and pollers), so a panic is
// recovered there and never takes the process down: the endpoint stops
// the playback (its done gets the *PanicError), drops the sink, or drops
// the DTMF callback, and calls fn once per panic — from the media path,
// so fn must not block. Without fn the endpoint logs the first panic.
func (e *Endpoint) OnPanic(fn func(*PanicError)) {
	if fn == nil {
		e.onPanic.Store(nil)
		return
	}
	e.onPanic.Store(&fn)
}

// recovered turns a recovered panic value into a *PanicError and reports
// it. It is called from a deferred function, once per panic.
func (e *Endpoint) recovered(where PanicWhere, r any) *PanicError {
	pe := &PanicError{Where: where, Value: r, Stack: debug.Stack()}
	if fn := e.onPanic.Load(); fn != nil {
		(*fn)(pe)
	} else if e.panicLogged.CompareAndSwap(false, true) {
		e.log.Error("media: user code panicked on the media path", "where", where.String(), "panic", fmt.Sprint(r), "stack", string(pe.Stack))
	}
	return pe
}

// readSource reads a frame from a user Source, recovering a panic.
func (e *Endpoint) readSource(src Source, f *Frame) (err error) {
	defer e.catchSource(&err)
	return src.ReadFrame(f)
}

func (e *Endpoint) catchSource(err *error) {
	if r := recover(); r != nil {
		*err = e.recovered(PanicSource, r)
	}
}

// writeSink gives a frame to the endpoint's sink, recovering a panic: the
// sink that panicked is removed (unless it was replaced meanwhile), so it
// is not called again.
func (e *Endpoint) writeSink(sb *sinkBox, f *Frame) {
	defer e.catchSink(sb)
	_ = sb.s.WriteFrame(f)
}

func (e *Endpoint) catchSink(sb *sinkBox) {
	if r := recover(); r != nil {
		e.sink.CompareAndSwap(sb, nil)
		e.recovered(PanicSink, r)
	}
}

// callDTMF runs the DTMF callback, recovering a panic: the callback that
// panicked is removed.
func (e *Endpoint) callDTMF(fn *func(DTMFEvent), ev DTMFEvent) {
	defer e.catchDTMF(fn)
	(*fn)(ev)
}

func (e *Endpoint) catchDTMF(fn *func(DTMFEvent)) {
	if r := recover(); r != nil {
		e.onDTMF.CompareAndSwap(fn, nil)
		e.recovered(PanicDTMF, r)
	}
}

// panicState is the endpoint's part of the above.
type panicState struct {
	onPanic     atomic.Pointer[func(*PanicError)]
	panicLogged atomic.Bool
}
