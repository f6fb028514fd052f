package sip

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-voice/switchboard/presence"
)

// EventHeader is a parsed Event header (RFC 6665 section 8.2.1):
// "presence", "dialog;id=7", "refer;id=93809824".
type EventHeader struct {
	Package string // event package (with any template: "presence.winfo"), lower case
	ID      string // the id parameter, "" if absent
}

// maxEventHeader bounds what ParseEvent reads; a real one is a few dozen
// bytes.
const maxEventHeader = 512

// ParseEvent parses an Event header value: a token, then parameters
// separated by semicolons. Package names compare case-insensitively (they
// are tokens; RFC 6665 section 7.2.1 registers them in lower case).
func ParseEvent(v string) (EventHeader, error) {
	if len(v) > maxEventHeader {
		return EventHeader{}, errors.New("sip: Event header too long")
	}
	pkg, params, _ := strings.Cut(v, ";")
	pkg = strings.TrimSpace(pkg)
	if pkg == "" || !isToken([]byte(pkg)) {
		return EventHeader{}, fmt.Errorf("sip: bad event package %q", pkg)
	}
	ev := EventHeader{Package: strings.ToLower(pkg)}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, val, hasVal := strings.Cut(strings.TrimSpace(p), "=")
		name, val = strings.TrimSpace(name), strings.TrimSpace(val)
		if name == "" || !isToken([]byte(name)) {
			return EventHeader{}, fmt.Errorf("sip: bad Event parameter %q", p)
		}
		if hasVal {
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			} else if val == "" || !isToken([]byte(val)) {
				return EventHeader{}, fmt.Errorf("sip: bad Event parameter value %q", p)
			}
		}
		if strings.EqualFold(name, "id") {
			ev.ID = val
		}
	}
	return ev, nil
}

// String writes the header value back.
func (e EventHeader) String() string {
	if e.ID == "" {
		return e.Package
	}
	return e.Package + ";id=" + e.ID
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// pidfBody renders a presence document (RFC 3863) for entity with the
// person's activity (RFC 4480) and note: basic "open" whenever the user is
// online, "closed" when offline; on-call is the activity on-the-phone, away
// is away, ringing is an "other" activity. Phones that only read <basic>
// (and baresip, which also reads on-the-phone and away) understand it.
func pidfBody(entity string, p presence.Presence) []byte {
	var b strings.Builder
	basic := "open"
	activity := ""
	switch p.Status {
	case presence.Offline:
		basic = "closed"
	case presence.OnCall:
		activity = "<rpid:on-the-phone/>"
	case presence.Away:
		activity = "<rpid:away/>"
	case presence.Ringing:
		activity = "<rpid:other>ringing</rpid:other>"
	}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n")
	b.WriteString(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="` + xmlEscape(entity) + `">` + "\r\n")
	b.WriteString(`  <tuple id="t1"><status><basic>` + basic + `</basic></status></tuple>` + "\r\n")
	b.WriteString(`  <dm:person id="p1">`)
	if activity != "" {
		b.WriteString(`<rpid:activities>` + activity + `</rpid:activities>`)
	}
	if p.Note != "" {
		b.WriteString(`<dm:note>` + xmlEscape(p.Note) + `</dm:note>`)
	}
	b.WriteString(`</dm:person>` + "\r\n")
	b.WriteString(`</presence>` + "\r\n")
	return []byte(b.String())
}

// dialogInfoBody renders a full dialog-info document (RFC 4235) listing
// dialogs; version counts the NOTIFYs of one subscription from 0.
func dialogInfoBody(entity string, version uint32, dialogs []presence.Dialog) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\r\n")
	b.WriteString(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="` + strconv.FormatUint(uint64(version), 10) +
		`" state="full" entity="` + xmlEscape(entity) + `">` + "\r\n")
	for _, d := range dialogs {
		b.WriteString(`  <dialog id="` + xmlEscape(d.ID) + `" call-id="` + xmlEscape(d.CallID) + `"`)
		if d.LocalTag != "" {
			b.WriteString(` local-tag="` + xmlEscape(d.LocalTag) + `"`)
		}
		if d.RemoteTag != "" {
			b.WriteString(` remote-tag="` + xmlEscape(d.RemoteTag) + `"`)
		}
		b.WriteString(` direction="` + d.Direction.String() + `">`)
		b.WriteString(`<state>` + d.State.String() + `</state>`)
		if d.Local != "" {
			b.WriteString(`<local><identity>` + xmlEscape(d.Local) + `</identity></local>`)
		}
		if d.Remote != "" {
			b.WriteString(`<remote><identity>` + xmlEscape(d.Remote) + `</identity></remote>`)
		}
		b.WriteString("</dialog>\r\n")
	}
	b.WriteString("</dialog-info>\r\n")
	return []byte(b.String())
}
