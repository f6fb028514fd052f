package sip

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/presence"
)

const baresipPIDF = `<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="sip:alice@127.0.0.1">
  <dm:person id="p4159"><rpid:activities/></dm:person>
  <tuple id="t4109">
    <status>
      <basic>%s</basic>
    </status>
    <contact>sip:alice@127.0.0.1</contact>
  </tuple>
</presence>`

func TestParsePIDF(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		status presence.Status
		note   string
		bad    bool
	}{
		{name: "baresip open", body: strings.Replace(baresipPIDF, "%s", "open", 1), status: presence.Available},
		{name: "baresip closed", body: strings.Replace(baresipPIDF, "%s", "closed", 1), status: presence.Offline},
		{name: "away with a note", status: presence.Away, note: "gone fishing",
			body: `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" xmlns:d="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:a@b">
<tuple id="1"><status><basic>open</basic></status></tuple><d:person id="x"><r:activities><r:away/></r:activities><d:note> gone fishing </d:note></d:person></presence>`},
		{name: "on the phone is not chosen", status: presence.Available,
			body: `<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="1"><status><basic>open</basic></status><note>x</note></tuple><person><activities><on-the-phone/></activities></person></presence>`, note: "x"},
		{name: "our own document", status: presence.Away, note: "lunch", body: string(pidfBody("sip:a@b", presence.Presence{Status: presence.Away, Note: "lunch"}))},
		{name: "not xml", body: "open", bad: true},
		{name: "wrong root", body: `<dialog-info/>`, bad: true},
		{name: "unclosed", body: `<presence><tuple>`, bad: true},
		{name: "empty", body: ``, bad: true},
		{name: "too deep", body: "<presence>" + strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40) + "</presence>", bad: true},
		{name: "too large", body: "<presence>" + strings.Repeat(" ", maxPIDF) + "</presence>", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParsePIDF([]byte(tc.body))
			if tc.bad {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", st)
				}
				return
			}
			if err != nil || st.Status() != tc.status || st.Note != tc.note {
				t.Fatalf("got %+v (%s), %v; want %s note %q", st, st.Status(), err, tc.status, tc.note)
			}
		})
	}
}

func FuzzParsePIDF(f *testing.F) {
	f.Add([]byte(strings.Replace(baresipPIDF, "%s", "open", 1)))
	f.Add(pidfBody("sip:a@b", presence.Presence{Status: presence.OnCall, Note: "n"}))
	f.Add([]byte(`<presence><tuple><status><basic>closed</basic></status></tuple></presence>`))
	f.Add([]byte(`<presence><person><activities><away/><busy/></activities></person></presence>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParsePIDF(b)
		if err != nil {
			return
		}
		if len(st.Activities) > 16 {
			t.Fatalf("%d activities kept", len(st.Activities))
		}
		_ = st.Status()
	})
}

// The PUBLISH state machine of RFC 3903: initial, refresh, modify,
// remove, and 412 for an entity tag we did not issue.
func TestPublications(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var p publications
	store := presence.New(presence.Options{})
	store.SetOnline("alice", "sip", 1)
	if _, code := p.apply("alice", "", false, PIDFStatus{}, time.Minute, log); code != 400 {
		t.Fatalf("initial PUBLISH without body: %d, want 400", code)
	}
	if _, code := p.apply("alice", "nope", false, PIDFStatus{}, time.Minute, log); code != 412 {
		t.Fatalf("unknown entity tag: %d, want 412", code)
	}
	etag, code := p.apply("alice", "", true, PIDFStatus{Open: true, Activities: []string{"away"}, Note: "out"}, time.Minute, log)
	if code != 0 || etag == "" {
		t.Fatalf("initial: %q %d", etag, code)
	}
	p.sync(store, "alice")
	if pr, _ := store.Get("alice"); pr.Status != presence.Away || pr.Note != "out" {
		t.Fatalf("after initial: %+v", pr)
	}
	if _, code := p.apply("bob", etag, false, PIDFStatus{}, time.Minute, log); code != 412 {
		t.Fatalf("someone else's entity tag: %d, want 412", code)
	}
	etag2, code := p.apply("alice", etag, false, PIDFStatus{}, time.Minute, log)
	if code != 0 || etag2 == etag {
		t.Fatalf("refresh: %q %d (a new tag is issued)", etag2, code)
	}
	if _, code := p.apply("alice", etag, false, PIDFStatus{}, time.Minute, log); code != 412 {
		t.Fatalf("refresh with the old tag: %d, want 412", code)
	}
	p.sync(store, "alice")
	if pr, _ := store.Get("alice"); pr.Status != presence.Away {
		t.Fatalf("a refresh changed the status: %+v", pr)
	}
	etag3, _ := p.apply("alice", etag2, true, PIDFStatus{Open: false}, time.Minute, log)
	p.sync(store, "alice")
	if pr, _ := store.Get("alice"); pr.Status != presence.Offline {
		t.Fatalf("after modify to closed: %+v", pr)
	}
	if _, code := p.apply("alice", etag3, false, PIDFStatus{}, 0, log); code != 0 {
		t.Fatalf("remove: %d", code)
	}
	p.sync(store, "alice")
	if pr, _ := store.Get("alice"); pr.Status != presence.Available || pr.Note != "" {
		t.Fatalf("after remove: %+v", pr)
	}
	// Expiry resets the user too.
	p.apply("alice", "", true, PIDFStatus{Open: false}, time.Minute, log)
	p.sync(store, "alice")
	p.expire(time.Now().Add(2*time.Minute), store)
	if pr, _ := store.Get("alice"); pr.Status != presence.Available {
		t.Fatalf("after expiry: %+v", pr)
	}
}
