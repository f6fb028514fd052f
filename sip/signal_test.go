package sip

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		body    string
		name    string
		payload string
		ok      bool
	}{
		{`{"name":"hand-raised","payload":{"raised": true}}`, "hand-raised", `{"raised":true}`, true},
		{`{"name":"ping"}`, "ping", "", true},
		{`{"name":"n","payload":null}`, "n", "", true},
		{`{"name":"n","payload":[1, 2 ,3]}`, "n", `[1,2,3]`, true},
		{` {"payload":"x","name":"n","extra":1} `, "n", `"x"`, true},
		{`{"name":""}`, "", "", false},
		{`{"payload":1}`, "", "", false},
		{`{"name":5}`, "", "", false},
		{`{"name":"` + strings.Repeat("x", 65) + `"}`, "", "", false},
		{`{"name":"n","payload":"` + strings.Repeat("x", MaxSignalPayload) + `"}`, "", "", false},
		{`{"name":"n","payload":`, "", "", false},
		{`["name"]`, "", "", false},
		{``, "", "", false},
		{`not json`, "", "", false},
	}
	for _, tt := range tests {
		name, payload, err := ParseSignal([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("ParseSignal(%.40q): err %v, want ok=%v", tt.body, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadSignal) {
				t.Errorf("ParseSignal(%.40q): %v does not wrap ErrBadSignal", tt.body, err)
			}
			continue
		}
		if name != tt.name || string(payload) != tt.payload {
			t.Errorf("ParseSignal(%.40q) = %q %s, want %q %s", tt.body, name, payload, tt.name, tt.payload)
		}
	}
}

func FuzzParseSignal(f *testing.F) {
	f.Add([]byte(`{"name":"hand-raised","payload":{"raised":true}}`))
	f.Add([]byte(`{"name":"n","payload":[1,{"a":"\u00e9"}]}`))
	f.Add([]byte(`{"name":"\xff"}`))
	f.Add([]byte(`{"name":"n","payload":1e999}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		name, payload, err := ParseSignal(body)
		if err != nil {
			return
		}
		if name == "" || len(name) > MaxSignalName || !utf8.ValidString(name) {
			t.Fatalf("accepted name %q", name)
		}
		if len(payload) > MaxSignalPayload || (payload != nil && !json.Valid(payload)) {
			t.Fatalf("accepted payload %q", payload)
		}
	})
}

// A panicking Config.OnMessage is answered 500 instead of taking the
// process down.
func TestOnMessagePanicIs500(t *testing.T) {
	a := &Agent{cfg: Config{OnMessage: func(PagerMessage) int { panic("app bug") }}}
	if code := a.callOnMessage(PagerMessage{User: "x"}, slog.New(slog.NewTextHandler(io.Discard, nil))); code != 500 {
		t.Fatalf("code %d, want 500", code)
	}
}
