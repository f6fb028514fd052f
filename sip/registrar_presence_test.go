package sip

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/presence"
)

// The registrar tells the presence store how many contacts each user has:
// the first makes the user available, the last one expiring makes them
// offline — found by syncPresence (the agent's once-a-second sweep)
// without any REGISTER.
func TestRegistrarFeedsPresence(t *testing.T) {
	store := presence.New(presence.Options{})
	r := NewRegistrar(NewDirectory(Account{Name: "alice", Password: "x"}), "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Presence = store
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	bind := func(contact string, ttl time.Duration) {
		r.mu.Lock()
		r.bindings["alice"] = append(r.bindings["alice"], Binding{User: "alice", Contact: contact, Expires: now.Add(ttl)})
		r.mu.Unlock()
	}
	status := func() presence.Presence { p, _ := store.Get("alice"); return p }

	bind("sip:alice@desk", 60*time.Second)
	r.syncPresence()
	if p := status(); p.Status != presence.Available || p.Online != 1 {
		t.Fatalf("after the first contact: %+v", p)
	}
	bind("sip:alice@mobile", 120*time.Second)
	_ = store.Set("alice", presence.Away, "")
	r.syncPresence()
	if p := status(); p.Status != presence.Away || p.Online != 2 {
		t.Fatalf("after the second contact: %+v", p)
	}
	now = now.Add(90 * time.Second) // the desk phone's binding lapses
	r.syncPresence()
	if p := status(); p.Status != presence.Away || p.Online != 1 {
		t.Fatalf("after one expiry: %+v", p)
	}
	now = now.Add(60 * time.Second) // and the mobile's
	r.syncPresence()
	if p := status(); p.Status != presence.Offline || p.Online != 0 {
		t.Fatalf("after the last expiry: %+v", p)
	}
	r.Lookup("alice") // drops the expired bindings
	r.syncPresence()
	if p := status(); p.Status != presence.Offline {
		t.Fatalf("after cleanup: %+v", p)
	}
}
