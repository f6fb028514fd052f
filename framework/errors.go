package framework

import "errors"

// The sentinel errors read without a package prefix: the verb that
// returns one wraps it once ("framework: record: call hung up").

// ErrHangup is returned by every verb once the call has ended — the caller
// hung up, the media timed out, or the server is shutting down. The call
// flow's ctx is cancelled with it as the cause.
var ErrHangup = errors.New("call hung up")

// ErrNoInput is returned by CollectDigits when no digit arrived before the
// first-digit timeout.
var ErrNoInput = errors.New("no digits entered")

// ErrNotAnswered is returned by Reject after the call was answered, and by
// verbs that need an answered leg when answering failed.
var ErrNotAnswered = errors.New("call not answered")

// ErrBridged is returned by Play (and CollectDigits with a Prompt) while
// the caller is bridged by Dial or in a conference: they own the caller's
// audio.
var ErrBridged = errors.New("caller is bridged to another leg")

// verbError is an error of a Call verb: "framework: VERB: cause".
type verbError struct {
	verb string
	err  error
}

func (e *verbError) Error() string { return "framework: " + e.verb + ": " + e.err.Error() }
func (e *verbError) Unwrap() error { return e.err }

// wrapVerb names the verb that failed, once: an error that already names
// one (a verb built on another, like Record on Play) is returned as it is.
func wrapVerb(verb string, err error) error {
	if err == nil {
		return nil
	}
	var ve *verbError
	if errors.As(err, &ve) {
		return err
	}
	return &verbError{verb: verb, err: err}
}
