package sip

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Replaces names a dialog that a new one is to take the place of (RFC
// 3891): the Replaces header of an INVITE, or the ?Replaces= header of a
// REFER's Refer-To in an attended transfer.
type Replaces struct {
	CallID, ToTag, FromTag string
	// EarlyOnly asks to replace the dialog only while it is not
	// answered.
	EarlyOnly bool
}

// ErrBadReplaces reports a Replaces value that does not parse.
var ErrBadReplaces = errors.New("sip: malformed Replaces")

// ParseReplaces parses a Replaces header value:
// "callid;to-tag=a;from-tag=b[;early-only]".
func ParseReplaces(v string) (Replaces, error) {
	parts := strings.Split(strings.TrimSpace(v), ";")
	r := Replaces{CallID: strings.TrimSpace(parts[0])}
	if r.CallID == "" || len(r.CallID) > 256 {
		return Replaces{}, fmt.Errorf("%w: no Call-ID", ErrBadReplaces)
	}
	for _, p := range parts[1:] {
		name, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "to-tag":
			r.ToTag = strings.TrimSpace(val)
		case "from-tag":
			r.FromTag = strings.TrimSpace(val)
		case "early-only":
			r.EarlyOnly = true
		}
	}
	if r.ToTag == "" || r.FromTag == "" {
		return Replaces{}, fmt.Errorf("%w: to-tag and from-tag are required", ErrBadReplaces)
	}
	return r, nil
}

// String writes the header value.
func (r Replaces) String() string {
	s := r.CallID + ";to-tag=" + r.ToTag + ";from-tag=" + r.FromTag
	if r.EarlyOnly {
		s += ";early-only"
	}
	return s
}

// replacesInReferTo finds a Replaces header in a Refer-To's URI headers
// ("?Replaces=..."&...), percent-decoded; ok is false when there is none.
func replacesInReferTo(extra string) (Replaces, bool, error) {
	q := strings.TrimPrefix(extra, "?")
	if strings.Contains(strings.ToUpper(q), "%3B") {
		// Encoded as it should be: a raw ';' starts the Refer-To's own
		// parameters.
		q, _, _ = strings.Cut(q, ";")
	}
	for _, kv := range strings.Split(q, "&") {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.EqualFold(name, "Replaces") {
			continue
		}
		dec, err := url.QueryUnescape(val)
		if err != nil {
			return Replaces{}, true, fmt.Errorf("%w: %v", ErrBadReplaces, err)
		}
		r, err := ParseReplaces(dec)
		return r, true, err
	}
	return Replaces{}, false, nil
}

// LegFor returns the live leg whose dialog r names, or nil. Either order
// of the tags is accepted: phones disagree on which side's tag is which.
func (a *Agent) LegFor(r Replaces) *Leg {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range []string{sip.DialogIDMake(r.CallID, r.ToTag, r.FromTag), sip.DialogIDMake(r.CallID, r.FromTag, r.ToTag)} {
		if l := a.uas[id]; l != nil {
			return l
		}
		if l := a.uac[id]; l != nil {
			return l
		}
	}
	return nil
}

// Replaces returns the value that names this leg's dialog to its far end:
// to-tag is the far end's tag, from-tag ours. A phone that holds two calls
// with a server puts it in a REFER (attended transfer) or an INVITE.
func (l *Leg) Replaces() (Replaces, bool) {
	var local, remote string
	switch {
	case l.uac != nil && l.uac.InviteResponse != nil:
		local, _ = l.uac.InviteRequest.From().Params.Get("tag")
		remote, _ = l.uac.InviteResponse.To().Params.Get("tag")
	case l.uas != nil && l.uas.InviteResponse != nil:
		local, _ = l.uas.InviteResponse.To().Params.Get("tag")
		remote, _ = l.uas.InviteRequest.From().Params.Get("tag")
	}
	if local == "" || remote == "" {
		return Replaces{}, false
	}
	return Replaces{CallID: l.callID, ToTag: remote, FromTag: local}, true
}

// ReferTarget returns target with r as its ?Replaces= header, for the
// Refer-To of an attended transfer.
func ReferTarget(target string, r Replaces) string {
	return target + "?Replaces=" + url.QueryEscape(r.String())
}
