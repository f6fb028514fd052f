package media

import (
	"encoding/binary"
	"errors"
	"time"
)

// DTMFEvent is a digit received from the far end, through RFC 4733
// telephone-events (or, later, in-band detection or SIP INFO).
type DTMFEvent struct {
	Digit    rune
	Duration time.Duration // as far as known when the event is reported
	Source   string        // "rfc4733", "inband" or "info"
}

const dtmfDigits = "0123456789*#ABCD"

// DTMFDigit returns the digit for an RFC 4733 event code, or 0 if the code
// is not a DTMF digit (0-15).
func DTMFDigit(code uint8) rune {
	if int(code) < len(dtmfDigits) {
		return rune(dtmfDigits[code])
	}
	return 0
}

// DTMFCode returns the RFC 4733 event code of a digit (0-9, *, #, A-D;
// lower-case letters accepted).
func DTMFCode(d rune) (uint8, bool) {
	if d >= 'a' && d <= 'd' {
		d -= 'a' - 'A'
	}
	for i, c := range dtmfDigits {
		if c == d {
			return uint8(i), true
		}
	}
	return 0, false
}

// TelephoneEvent is the 4-byte RFC 4733 payload.
type TelephoneEvent struct {
	Event    uint8
	End      bool
	Volume   uint8 // 0-63, in -dBm0
	Duration uint16
}

var errShortTelephoneEvent = errors.New("media: telephone-event payload shorter than 4 bytes")

// ParseTelephoneEvent decodes an RFC 4733 payload.
func ParseTelephoneEvent(p []byte) (TelephoneEvent, error) {
	if len(p) < 4 {
		return TelephoneEvent{}, errShortTelephoneEvent
	}
	return TelephoneEvent{
		Event:    p[0],
		End:      p[1]&0x80 != 0,
		Volume:   p[1] & 0x3f,
		Duration: binary.BigEndian.Uint16(p[2:4]),
	}, nil
}

// AppendTo appends the 4-byte payload to dst.
func (t TelephoneEvent) AppendTo(dst []byte) []byte {
	b1 := t.Volume & 0x3f
	if t.End {
		b1 |= 0x80
	}
	return append(dst, t.Event, b1, byte(t.Duration>>8), byte(t.Duration))
}

// dtmfSender produces the RFC 4733 packet train of one digit: a first packet
// with the marker bit, one update per 20 ms with growing duration, and three
// end packets with the final duration, all on the timestamp of the start.
type dtmfSender struct {
	code     uint8
	total    uint16 // duration in timestamp units
	step     uint16
	elapsed  uint16
	endsSent int
	started  bool
	ts       uint32
}

// next returns the event to send now, whether it is the first (marker)
// packet, and whether the train is finished after it.
func (s *dtmfSender) next() (ev TelephoneEvent, first, done bool) {
	first = !s.started
	s.started = true
	if s.elapsed < s.total {
		s.elapsed += s.step
		if s.elapsed > s.total {
			s.elapsed = s.total
		}
	}
	ev = TelephoneEvent{Event: s.code, Volume: 10, Duration: s.elapsed}
	if s.elapsed >= s.total {
		ev.End = true
		s.endsSent++
	}
	return ev, first, s.endsSent >= 3
}
