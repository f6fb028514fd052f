package sip

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Identity is a party's identity as SIP carries it in a From or a
// P-Asserted-Identity header (RFC 3325).
type Identity struct {
	// Name is the display name, unquoted and unescaped ("" if none).
	Name string
	// User is the user part of the URI: a number or an extension. For a
	// tel: URI it is the number.
	User string
	// URI is the address without angle brackets or header parameters.
	URI string
	// Private is set when the party asked not to be identified (RFC 3323
	// Privacy: id, user or header): its identity is shown only to trusted
	// peers.
	Private bool
	// Asserted is set when the identity comes from a P-Asserted-Identity
	// sent by a trusted trunk rather than from the From header.
	Asserted bool
}

// String returns the identity as a name-addr: "Name" <URI>.
func (id Identity) String() string {
	if id.Name == "" {
		return "<" + id.URI + ">"
	}
	return `"` + escapeDisplayName(id.Name) + `" <` + id.URI + ">"
}

// maxDisplayName bounds a display name we keep or send (octets).
const maxDisplayName = 128

// ParseIdentity reads a From, To or P-Asserted-Identity value
// (`"Alice" <sip:1000@pbx>;tag=x`, `<tel:+4930123>` or a bare URI). The
// display name loses its quotes and escapes, control characters and
// anything past 128 octets.
func ParseIdentity(v string) (Identity, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return Identity{}, errors.New("sip: identity: empty")
	}
	var uri sip.Uri
	params := sip.NewParams()
	name, err := sip.ParseAddressValue(v, &uri, &params)
	if err != nil {
		return Identity{}, fmt.Errorf("sip: identity %q: %w", v, err)
	}
	if uri.Scheme == "" {
		return Identity{}, fmt.Errorf("sip: identity %q: no URI scheme", v)
	}
	id := identityOf(name, uri)
	if strings.ContainsFunc(id.URI, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Identity{}, fmt.Errorf("sip: identity %q: control character in the URI", v)
	}
	return id, nil
}

// identityOf builds an Identity from a parsed display name (as it stood
// between the quotes) and URI.
func identityOf(display string, uri sip.Uri) Identity {
	u := uri.Clone()
	u.Headers = nil
	user, s := uri.User, u.String()
	if strings.EqualFold(uri.Scheme, "tel") && user == "" {
		// tel:+15551234567;phone-context=...: the number is the URI's body.
		user, _, _ = strings.Cut(s[len("tel:"):], ";")
	}
	return Identity{Name: cleanDisplayName(display), User: user, URI: s}
}

// cleanDisplayName unescapes a quoted-string's content and drops control
// characters, keeping at most maxDisplayName octets of whole runes.
func cleanDisplayName(s string) string {
	var b strings.Builder
	escaped := false
	for _, r := range s {
		if !escaped && r == '\\' {
			escaped = true
			continue
		}
		escaped = false
		if r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len()+len(string(r)) > maxDisplayName {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// escapeDisplayName makes name safe between the quotes of a quoted-string
// (RFC 3261 25.1): backslash and quote escaped, control characters
// dropped.
func escapeDisplayName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f:
			continue
		case r == '"' || r == '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// privacyRequested reports whether a Privacy header value (RFC 3323
// priv-values separated by ';') asks to hide the identity: id, user or
// header. "none" and unknown values do not.
func privacyRequested(v string) bool {
	for _, p := range strings.Split(v, ";") {
		switch strings.ToLower(strings.TrimSpace(p)) {
		case "id", "user", "header":
			return true
		}
	}
	return false
}

// anonymousFrom is the From we present for a caller who asked for privacy
// toward a peer we do not trust (RFC 3323 4.1.1.3).
var anonymousFrom = sip.Uri{Scheme: "sip", User: "anonymous", Host: "anonymous.invalid"}

// callerIdentity is who an INVITE says it is from. A P-Asserted-Identity
// counts only from a trusted peer (RFC 3325: anyone else could forge it);
// the display name falls back to the From's.
func callerIdentity(req *sip.Request, trusted bool, log *slog.Logger, th *logThrottle) Identity {
	var id Identity
	if f := req.From(); f != nil {
		id = identityOf(f.DisplayName, f.Address)
	}
	if h := req.GetHeader("P-Asserted-Identity"); h != nil {
		if !trusted {
			log.Debug("sip: P-Asserted-Identity from an untrusted peer ignored", "pai", h.Value())
		} else if pai, err := ParseIdentity(firstListItem(h.Value())); err != nil {
			if ok, held := th.allow(time.Now()); ok {
				log.Warn("sip: unreadable P-Asserted-Identity ignored", "pai", h.Value(), "error", err, "suppressed_before", held)
			}
		} else {
			if pai.Name == "" {
				pai.Name = id.Name
			}
			pai.Asserted = true
			id = pai
		}
	}
	if h := req.GetHeader("Privacy"); h != nil {
		id.Private = privacyRequested(h.Value())
	}
	return id
}

// firstListItem returns the first element of a comma-separated header
// value, leaving commas inside quotes or angle brackets alone (a PAI may
// list a sip: and a tel: identity).
func firstListItem(v string) string {
	item, _, _ := nextListItem(v)
	return item
}

// nextListItem splits a comma-separated header value at its first comma
// outside quotes and angle brackets: the element before it, what follows
// it, and whether there was one.
func nextListItem(v string) (item, rest string, more bool) {
	quoted, angle := false, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '<' && !quoted:
			angle = true
		case c == '>' && !quoted:
			angle = false
		case c == ',' && !quoted && !angle:
			return v[:i], v[i+1:], true
		}
	}
	return v, "", false
}
