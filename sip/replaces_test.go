package sip

import (
	"errors"
	"testing"
)

func TestParseReplaces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Replaces
		err  bool
	}{
		{"abc@h;to-tag=1;from-tag=2", Replaces{CallID: "abc@h", ToTag: "1", FromTag: "2"}, false},
		{" abc ; from-tag=2 ; to-tag=1 ;early-only", Replaces{CallID: "abc", ToTag: "1", FromTag: "2", EarlyOnly: true}, false},
		{"abc;to-tag=1", Replaces{}, true},
		{";to-tag=1;from-tag=2", Replaces{}, true},
		{"", Replaces{}, true},
	} {
		got, err := ParseReplaces(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseReplaces(%q) = %+v, %v; want %+v, err %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrBadReplaces) {
			t.Errorf("ParseReplaces(%q): error %v is not ErrBadReplaces", tc.in, err)
		}
	}
}

func TestReplacesInReferTo(t *testing.T) {
	want := Replaces{CallID: "abc@h", ToTag: "1", FromTag: "2"}
	target := ReferTarget("sip:bob@h", want)
	_, extra, err := parseReferTo("<" + target + ">;method=INVITE")
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := replacesInReferTo(extra)
	if !ok || err != nil || got != want {
		t.Fatalf("round trip through Refer-To: %+v %v %v, want %+v", got, ok, err, want)
	}
	if _, ok, _ := replacesInReferTo(";method=INVITE"); ok {
		t.Fatal("found Replaces where there is none")
	}
	if _, ok, err := replacesInReferTo("?Replaces=%ZZ"); !ok || err == nil {
		t.Fatal("a badly escaped Replaces was accepted")
	}
}

func FuzzParseReplaces(f *testing.F) {
	for _, s := range []string{"abc@h;to-tag=1;from-tag=2", "a;early-only;to-tag=;from-tag=x", ";;;", "x;to-tag=1;from-tag=2;to-tag=3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReplaces(s)
		if err != nil {
			return
		}
		again, err := ParseReplaces(r.String())
		if err != nil || again != r {
			t.Fatalf("%q parsed to %+v, which writes as %q and parses to %+v, %v", s, r, r.String(), again, err)
		}
		_, _, _ = replacesInReferTo("?Replaces=" + s)
	})
}
