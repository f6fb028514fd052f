package framework

import "github.com/switchboard-voice/switchboard/sip"

// CallerID is a caller's identity: what the called phone shows.
// Call.Caller returns the caller's; DialOptions.CallerID sets the one a
// Dial presents.
type CallerID struct {
	// Name is the display name ("Alice Smith").
	Name string
	// Number is the user part of the caller's URI: a phone number or an
	// extension ("+15551234567", "1000").
	Number string
	// URI is the caller's full address ("sip:1000@pbx.example"); Dial
	// ignores it (calls go out from our own address).
	URI string
	// Private is set when the caller asked not to be identified (SIP
	// Privacy: id): a Dial then shows untrusted peers an anonymous caller
	// and only trusted trunks the real identity.
	Private bool
}

// IsZero reports whether no field is set.
func (id CallerID) IsZero() bool { return id == CallerID{} }

// callerOf is the identity of the party on sig: sip.Leg knows it; other
// signaling falls back to parsing From.
func callerOf(sig Signaling) CallerID {
	var id sip.Identity
	if r, ok := sig.(interface{ RemoteIdentity() sip.Identity }); ok {
		id = r.RemoteIdentity()
	} else if p, err := sip.ParseIdentity(sig.From()); err == nil {
		id = p
	}
	return CallerID{Name: id.Name, Number: id.User, URI: id.URI, Private: id.Private}
}
