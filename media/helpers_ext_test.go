package media_test

import (
	"io"

	"github.com/switchboard-voice/switchboard/media"
)

// Sources shared by the external tests; reading sources and finding
// espeak-ng are in media/internal/mediatest, shared with media/audio.

// neverSource is empty even after a rewind.
type neverSource struct{ rewinds int }

// failingSource always fails with err.
type failingSource struct{ err error }

func (*neverSource) ReadFrame(*media.Frame) error { return io.EOF }

func (s *neverSource) Rewind() { s.rewinds++ }

func (s failingSource) ReadFrame(*media.Frame) error { return s.err }

func (failingSource) Rewind() {}
