package sip

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func registerWithPath(values ...string) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	for _, v := range values {
		req.AppendHeader(sip.NewHeader("Path", v))
	}
	return req
}

func TestPathOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		want    []string
		err     string
	}{
		{"none", nil, nil, ""},
		{"one", []string{"<sip:10.0.0.1:5060;lr;received=sip:203.0.113.7:40312>"}, []string{"<sip:10.0.0.1:5060;lr;received=sip:203.0.113.7:40312>"}, ""},
		{"two headers", []string{"<sip:p1.example;lr>", "<sip:p2.example;lr>"}, []string{"<sip:p1.example;lr>", "<sip:p2.example;lr>"}, ""},
		{"comma list", []string{"<sip:p1.example;lr>, <sip:p2.example;lr>"}, []string{"<sip:p1.example;lr>", "<sip:p2.example;lr>"}, ""},
		{"comma inside the URI", []string{`<sip:p1.example;lr;x="a,b">`}, []string{`<sip:p1.example;lr;x="a,b">`}, ""},
		{"no brackets", []string{"sip:p1.example;lr"}, nil, "no <URI>"},
		{"not a URI", []string{"<no uri here>"}, nil, "no SIP URI"},
		{"too many", []string{strings.Repeat("<sip:p.example;lr>,", 8) + "<sip:p.example;lr>"}, nil, "too long"},
		{"too big", []string{"<sip:" + strings.Repeat("a", 2100) + ".example;lr>"}, nil, "too long"},
	} {
		got, err := pathOf(registerWithPath(tc.headers...))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestRouteHost(t *testing.T) {
	for in, want := range map[string]string{
		"<sip:127.0.0.1:25060;lr;received=sip:127.0.0.1:40000>": "127.0.0.1:25060",
		"<sip:proxy.example;lr>":                                "proxy.example:5060",
		" <sip:[::1]:5070;lr> ":                                 "[::1]:5070",
		"<>":                                                    "",
		"garbage":                                               "",
	} {
		if got := routeHost(in); got != want {
			t.Errorf("routeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzPathOf(f *testing.F) {
	f.Add("<sip:10.0.0.1:5060;lr;received=sip:203.0.113.7:40312>")
	f.Add(`<sip:p1.example;lr;x="a,b">, <sip:p2>`)
	f.Add(`"quoted <" <sip:x>`)
	f.Fuzz(func(t *testing.T, v string) {
		path, err := pathOf(registerWithPath(v))
		if err == nil && len(path) > maxPathEntries {
			t.Fatalf("%d entries accepted", len(path))
		}
		for _, p := range path {
			_ = routeHost(p)
		}
	})
}
