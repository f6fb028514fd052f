package sip

import "testing"

func TestParseReferTo(t *testing.T) {
	cases := []struct {
		in, target, extra string
		ok                bool
	}{
		{"<sip:bob@example.com>", "sip:bob@example.com", "", true},
		{"sip:bob@example.com;method=INVITE", "sip:bob@example.com", ";method=INVITE", true},
		{`"Bob" <sip:bob@h:5070;transport=tcp?Replaces=abc%40h%3Bto-tag%3D1>`, "sip:bob@h:5070;transport=tcp", "?Replaces=abc%40h%3Bto-tag%3D1", true},
		{"<tel:+15551234567>", "tel:+15551234567", "", true},
		{"<sip:bob@h", "", "", false},
		{"<http://evil/>", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		target, extra, err := parseReferTo(c.in)
		if (err == nil) != c.ok || target != c.target || extra != c.extra {
			t.Errorf("parseReferTo(%q) = %q, %q, %v; want %q, %q, ok=%v", c.in, target, extra, err, c.target, c.extra, c.ok)
		}
	}
}

func TestSipfragStatus(t *testing.T) {
	for body, want := range map[string]int{
		"SIP/2.0 100 Trying\r\n":            100,
		"SIP/2.0 200 OK":                    200,
		"SIP/2.0 486 Busy Here\r\nX: y\r\n": 486,
		"SIP/2.0 99 Low":                    0,
		"HTTP/1.1 200 OK":                   0,
		"":                                  0,
		"SIP/2.0":                           0,
	} {
		if got, _ := sipfragStatus([]byte(body)); got != want {
			t.Errorf("sipfragStatus(%q) = %d, want %d", body, got, want)
		}
	}
}

func FuzzParseReferTo(f *testing.F) {
	for _, s := range []string{"<sip:bob@h>", "sip:a@b;x=y", "<sip:a@b?Replaces=1>;p", "<", ">", "<sip:@>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _ = parseReferTo(s)
		_, _ = sipfragStatus([]byte(s))
	})
}
