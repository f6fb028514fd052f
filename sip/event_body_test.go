package sip

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/presence"
)

func TestParseEvent(t *testing.T) {
	tests := []struct {
		in      string
		pkg, id string
		bad     bool
	}{
		{in: "presence", pkg: "presence"},
		{in: "Presence", pkg: "presence"},
		{in: " dialog ; id=7 ", pkg: "dialog", id: "7"},
		{in: "refer;id=93809824", pkg: "refer", id: "93809824"},
		{in: "dialog;sla;include-session-description", pkg: "dialog"},
		{in: `presence;id="a b"`, pkg: "presence", id: "a b"},
		{in: "presence.winfo", pkg: "presence.winfo"},
		{in: "", bad: true},
		{in: "pres ence", bad: true},
		{in: "presence;;", bad: true},
		{in: "presence;id=", bad: true},
		{in: "presence;=x", bad: true},
		{in: "<presence>", bad: true},
		{in: "presence;id=a b", bad: true},
		{in: strings.Repeat("a", maxEventHeader+1), bad: true},
	}
	for _, tc := range tests {
		ev, err := ParseEvent(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseEvent(%q) = %+v, want an error", tc.in, ev)
			}
			continue
		}
		if err != nil || ev.Package != tc.pkg || ev.ID != tc.id {
			t.Errorf("ParseEvent(%q) = %+v, %v; want %s id %q", tc.in, ev, err, tc.pkg, tc.id)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"presence", "dialog;id=1", `refer;id="x"`, "a;b;c=d", ";", "presence;id=\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ev, err := ParseEvent(s)
		if err != nil {
			return
		}
		// What parses is a token and survives a round trip.
		if !isToken([]byte(ev.Package)) || ev.Package != strings.ToLower(ev.Package) {
			t.Fatalf("package %q from %q", ev.Package, s)
		}
		if strings.ContainsAny(ev.ID, ";") {
			return // a quoted id may hold anything but DQUOTE; not re-parsable unquoted
		}
		back, err := ParseEvent(ev.String())
		if err != nil && isToken([]byte(ev.ID)) {
			t.Fatalf("%q → %q does not parse again: %v", s, ev.String(), err)
		}
		if err == nil && back.Package != ev.Package {
			t.Fatalf("round trip %q → %+v → %+v", s, ev, back)
		}
	})
}

// The bodies are well-formed XML and carry what watchers read.
func TestEventBodies(t *testing.T) {
	tests := []struct {
		p    presence.Presence
		want []string
	}{
		{presence.Presence{Status: presence.Offline}, []string{"<basic>closed</basic>"}},
		{presence.Presence{Status: presence.Available, Note: "in <the> office & more"}, []string{"<basic>open</basic>", "<dm:note>in &lt;the&gt; office &amp; more</dm:note>"}},
		{presence.Presence{Status: presence.OnCall}, []string{"<basic>open</basic>", "<rpid:on-the-phone/>"}},
		{presence.Presence{Status: presence.Away}, []string{"<basic>open</basic>", "<rpid:away/>"}},
		{presence.Presence{Status: presence.Ringing}, []string{"<basic>open</basic>", "ringing"}},
	}
	for _, tc := range tests {
		body := string(pidfBody(`sip:al"ice@example.com`, tc.p))
		if err := wellFormed(body); err != nil {
			t.Errorf("%s: PIDF not well-formed: %v\n%s", tc.p.Status, err, body)
		}
		for _, w := range tc.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: PIDF lacks %q:\n%s", tc.p.Status, w, body)
			}
		}
	}
	d := dialogInfoBody("sip:alice@example.com", 3, []presence.Dialog{
		{ID: "c1", CallID: "c1@x", LocalTag: "l", RemoteTag: "r&", Direction: presence.Recipient, State: presence.DialogConfirmed, Local: "sip:alice@x", Remote: "sip:bob@y"},
	})
	if err := wellFormed(string(d)); err != nil {
		t.Fatalf("dialog-info not well-formed: %v\n%s", err, d)
	}
	for _, w := range []string{`version="3"`, `state="full"`, `direction="recipient"`, "<state>confirmed</state>", `remote-tag="r&amp;"`} {
		if !strings.Contains(string(d), w) {
			t.Errorf("dialog-info lacks %q:\n%s", w, d)
		}
	}
}

func wellFormed(s string) error {
	dec := xml.NewDecoder(strings.NewReader(s))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() == "EOF" {
				return nil
			}
			return err
		}
	}
}

func TestSubscribeExpires(t *testing.T) {
	lim := SubscriptionLimits{}.withDefaults()
	tests := []struct {
		header string // "" means none
		want   time.Duration
		code   int
	}{
		{"", time.Hour, 0},
		{"0", 0, 0},
		{"600", 600 * time.Second, 0},
		{"86400", time.Hour, 0},
		{"30", 0, 423},
		{"-1", 0, 400},
		{"soon", 0, 400},
		{"99999999999", 0, 400},
	}
	for _, tc := range tests {
		req := sip.NewRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
		if tc.header != "" {
			req.AppendHeader(sip.NewHeader("Expires", tc.header))
		}
		got, code := subscribeExpires(req, lim)
		if got != tc.want || code != tc.code {
			t.Errorf("Expires %q: %s %d, want %s %d", tc.header, got, code, tc.want, tc.code)
		}
	}
}
