package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func reqWith(headers map[string]string) *sip.Request {
	r := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "x", Host: "127.0.0.1"})
	for k, v := range headers {
		r.AppendHeader(sip.NewHeader(k, v))
	}
	return r
}

func TestParseSessionExpires(t *testing.T) {
	for _, c := range []struct {
		in        string
		interval  time.Duration
		refresher string
		ok        bool
	}{
		{"1800", 1800 * time.Second, "", true},
		{"90;refresher=uac", 90 * time.Second, "uac", true},
		{" 600 ; Refresher=UAS ", 600 * time.Second, "uas", true},
		{"0", 0, "", false},
		{"-5", 0, "", false},
		{"abc", 0, "", false},
		{"100000", 0, "", false},
		{"90;refresher=proxy", 0, "", false},
	} {
		se, present, err := parseSessionExpires(reqWith(map[string]string{"Session-Expires": c.in}))
		if !present || (err == nil) != c.ok || (c.ok && (se.interval != c.interval || se.refresher != c.refresher)) {
			t.Errorf("%q: %+v present=%v err=%v", c.in, se, present, err)
		}
	}
	if _, present, _ := parseSessionExpires(reqWith(nil)); present {
		t.Error("no header reported present")
	}
	if se, present, err := parseSessionExpires(reqWith(map[string]string{"x": "120"})); !present || err != nil || se.interval != 120*time.Second {
		t.Errorf("compact form: %+v %v %v", se, present, err)
	}
}

// Who refreshes: the caller's choice when it makes one; the caller when it
// supports timer; us when it does not; 422 under our minimum.
func TestNegotiateInbound(t *testing.T) {
	a := &Agent{cfg: Config{SessionExpires: 1800 * time.Second, MinSessionExpires: 90 * time.Second}}
	for _, c := range []struct {
		name      string
		h         map[string]string
		code      int
		interval  time.Duration
		weRefresh bool
	}{
		{"no timer support", nil, 0, 1800 * time.Second, true},
		{"supported, no header", map[string]string{"Supported": "timer"}, 0, 1800 * time.Second, false},
		{"caller refreshes", map[string]string{"Supported": "timer", "Session-Expires": "300;refresher=uac"}, 0, 300 * time.Second, false},
		{"asks us to refresh", map[string]string{"Supported": "timer", "Session-Expires": "300;refresher=uas"}, 0, 300 * time.Second, true},
		{"too small", map[string]string{"Session-Expires": "30"}, 422, 0, false},
		{"garbage", map[string]string{"Session-Expires": "soon"}, 400, 0, false},
	} {
		st, code, _ := a.negotiateInbound(reqWith(c.h))
		if code != c.code || (code == 0 && (st.interval != c.interval || st.weRefresh != c.weRefresh)) {
			t.Errorf("%s: %+v code %d", c.name, st, code)
		}
	}
}

func FuzzParseSessionExpires(f *testing.F) {
	for _, s := range []string{"1800", "90;refresher=uac", ";", "1;refresher", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		se, _, err := parseSessionExpires(reqWith(map[string]string{"Session-Expires": s}))
		if err == nil && (se.interval <= 0 || se.interval > 86400*time.Second) {
			t.Fatalf("%q accepted as %v", s, se.interval)
		}
	})
}
