package sip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		in      string
		want    Identity
		wantErr bool
	}{
		{in: `"Alice Smith" <sip:1000@pbx.example>;tag=abc`, want: Identity{Name: "Alice Smith", User: "1000", URI: "sip:1000@pbx.example"}},
		{in: `Bob <sip:bob@10.0.0.1:5060;transport=tcp>`, want: Identity{Name: "Bob", User: "bob", URI: "sip:bob@10.0.0.1:5060;transport=tcp"}},
		{in: `<sip:+15551234567@carrier.example;user=phone>`, want: Identity{User: "+15551234567", URI: "sip:+15551234567@carrier.example;user=phone"}},
		{in: `sip:carol@example.com;tag=1`, want: Identity{User: "carol", URI: "sip:carol@example.com"}},
		{in: `"Say \"hi\" \\ o" <sip:q@h>`, want: Identity{Name: `Say "hi" \ o`, User: "q", URI: "sip:q@h"}},
		{in: `"Anonymous" <sip:anonymous@anonymous.invalid>`, want: Identity{Name: "Anonymous", User: "anonymous", URI: "sip:anonymous@anonymous.invalid"}},
		{in: `"Carrier" <tel:+15551230000;phone-context=example.com>`, want: Identity{Name: "Carrier", User: "+15551230000", URI: "tel:+15551230000;phone-context=example.com"}},
		{in: ``, wantErr: true},
		{in: `"unterminated <sip:a@b>`, wantErr: true},
		{in: `<>`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIdentity(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseIdentity(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseIdentity(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestIdentityStringRoundTrips(t *testing.T) {
	for _, name := range []string{"Alice", `He said "no"`, `back\slash`, "Zoë Müller", ""} {
		id := Identity{Name: name, User: "1000", URI: "sip:1000@pbx"}
		got, err := ParseIdentity(id.String())
		if err != nil {
			t.Fatalf("%q: %v", id.String(), err)
		}
		if got.Name != name || got.URI != id.URI {
			t.Fatalf("%q parsed back as %+v", id.String(), got)
		}
	}
	// Control characters (a CR LF would end the header) never reach the wire.
	if s := (Identity{Name: "evil\r\nVia: x", URI: "sip:a@b"}).String(); strings.ContainsAny(s, "\r\n") {
		t.Fatalf("String kept control characters: %q", s)
	}
}

func TestPrivacyRequested(t *testing.T) {
	tests := map[string]bool{"id": true, "none": false, "user; id": true, "header": true, "critical": false, "": false, "ID": true, "session": false}
	for in, want := range tests {
		if got := privacyRequested(in); got != want {
			t.Errorf("privacyRequested(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFirstListItem(t *testing.T) {
	tests := map[string]string{
		`<sip:a@b>, <tel:+1555>`:         `<sip:a@b>`,
		`"Doe, John" <sip:j@h>, <tel:1>`: `"Doe, John" <sip:j@h>`,
		`<sip:a@b;x=1,2>`:                `<sip:a@b;x=1,2>`,
		`"a\",b" <sip:a@b>`:              `"a\",b" <sip:a@b>`,
	}
	for in, want := range tests {
		if got := firstListItem(in); got != want {
			t.Errorf("firstListItem(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseIdentity: any From or P-Asserted-Identity a peer sends parses
// or fails without a panic, and what it yields is safe to send on.
func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{`"Alice" <sip:1000@pbx>;tag=1`, `<tel:+4930123>`, `sip:a@b`, `"x\"y" <sip:q@h>`, `<sip:a@b>, <tel:1>`, `"`, `<`, `"a" <`, "\"\xff\" <sip:a@b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id, err := ParseIdentity(firstListItem(v))
		if err != nil {
			return
		}
		if len(id.Name) > maxDisplayName {
			t.Fatalf("display name of %d octets", len(id.Name))
		}
		if s := id.String(); strings.ContainsAny(s, "\r\n") {
			t.Fatalf("identity %q would break the header", s)
		}
		_ = utf8.ValidString(id.Name)
	})
}
