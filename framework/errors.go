package framework

import "errors"

// ErrHangup is returned by every verb once the call has ended — the caller
// hung up, the media timed out, or the server is shutting down. The call
// flow's ctx is cancelled with it as the cause.
var ErrHangup = errors.New("framework: call hung up")

// ErrNoInput is returned by CollectDigits when no digit arrived before the
// first-digit timeout.
var ErrNoInput = errors.New("framework: no digits entered")

// ErrNotAnswered is returned by Reject after the call was answered, and by
// verbs that need an answered leg when answering failed.
var ErrNotAnswered = errors.New("framework: call not answered")

// ErrBridged is returned by Play (and CollectDigits with a Prompt) while
// the caller is bridged by Dial or in a conference: they own the caller's
// audio.
var ErrBridged = errors.New("framework: caller is bridged to another leg")
