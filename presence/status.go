// Package presence keeps who is reachable: each user's status (offline,
// available, ringing, on a call, away) and note, derived from their online
// endpoints (registered SIP contacts today, browser logins later), the
// dialogs their phones are in, and what the user chose. A Store is owned by
// whoever creates it (the framework's Server); there is no global state.
// It is a leaf package: sip reports registrations and dialogs into it and
// serves SUBSCRIBE/NOTIFY from it, framework exposes it to applications.
package presence

import (
	"fmt"
	"strings"
)

// Status is a user's presence as others see it.
type Status uint8

// Statuses. The zero value is Offline.
const (
	Offline   Status = iota // no endpoint online (or the user appears offline)
	Available               // online, not on a call
	Ringing                 // one of the user's phones is ringing
	OnCall                  // on a call, or placing one (busy)
	Away                    // online but away (the user said so)
)

var statusNames = [...]string{"offline", "available", "ringing", "on-call", "away"}

// String returns the status's name: "offline", "available", "ringing",
// "on-call" or "away".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus returns the Status named s (as String writes it; "busy" is
// accepted for on-call).
func ParseStatus(s string) (Status, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "busy" {
		return OnCall, nil
	}
	for i, n := range statusNames {
		if n == s {
			return Status(i), nil
		}
	}
	return 0, fmt.Errorf("presence: unknown status %q", s)
}

// MarshalText writes the status as its name, so JSON carries "on-call".
func (s Status) MarshalText() ([]byte, error) {
	if int(s) >= len(statusNames) {
		return nil, fmt.Errorf("presence: invalid status %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// DialogState is the state of one of a user's dialogs, as RFC 4235's
// dialog event package names them.
type DialogState uint8

// Dialog states (RFC 4235 section 3.7.1).
const (
	DialogTrying     DialogState = iota // INVITE sent or received, nothing back yet
	DialogProceeding                    // a provisional response without a To tag
	DialogEarly                         // ringing: a provisional response with a To tag
	DialogConfirmed                     // answered
	DialogTerminated                    // over
)

var dialogStateNames = [...]string{"trying", "proceeding", "early", "confirmed", "terminated"}

// String returns the RFC 4235 name of the state.
func (s DialogState) String() string {
	if int(s) < len(dialogStateNames) {
		return dialogStateNames[s]
	}
	return fmt.Sprintf("dialogstate(%d)", uint8(s))
}

// MarshalText writes the state's name.
func (s DialogState) MarshalText() ([]byte, error) {
	if int(s) >= len(dialogStateNames) {
		return nil, fmt.Errorf("presence: invalid dialog state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// ParseDialogState returns the DialogState named s (as String writes it).
func ParseDialogState(s string) (DialogState, error) {
	for i, n := range dialogStateNames {
		if n == s {
			return DialogState(i), nil
		}
	}
	return 0, fmt.Errorf("presence: unknown dialog state %.32q", s)
}

// UnmarshalText reads a dialog state's name.
func (s *DialogState) UnmarshalText(b []byte) error {
	v, err := ParseDialogState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Direction says who started a dialog, seen from the user's phone.
type Direction uint8

// Directions (RFC 4235 "initiator" and "recipient").
const (
	Initiator Direction = iota // the user's phone placed the call
	Recipient                  // the user's phone was called
)

// String returns "initiator" or "recipient".
func (d Direction) String() string {
	if d == Recipient {
		return "recipient"
	}
	return "initiator"
}

// MarshalText writes the direction's name.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "initiator" or "recipient".
func (d *Direction) UnmarshalText(b []byte) error {
	switch string(b) {
	case "initiator":
		*d = Initiator
	case "recipient":
		*d = Recipient
	default:
		return fmt.Errorf("presence: unknown direction %.32q", b)
	}
	return nil
}
