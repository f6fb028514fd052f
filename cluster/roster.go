package cluster

import (
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/switchboard-voice/switchboard/presence"
)

// Rosters travel as deltas. Each push of a node's call list carries its
// presence roster (every user of its store with the user's dialogs on
// the node) numbered RosterSeq: whole the first time and to a member
// that asked for it, otherwise only the users whose entry changed since
// the previous push (RosterBase). A member whose last roster from the
// sender is not RosterBase (it missed a push, or joined since) keeps
// what it has and answers NeedRoster; the sender then sends it the whole
// roster on its next push, within 100 ms. Quiet pushes (every
// SyncInterval) carry no users at all.

// rosterSender is a node's side of the roster deltas. Guarded by
// Node.pushMu: pushes are one at a time.
type rosterSender struct {
	seq      uint64
	last     map[string]presence.Entry // the roster as of push seq
	needFull map[string]bool           // members to send the whole roster next (made by next)
}

// rosterPush is one push's two forms: the whole roster, and the delta
// from the previous push.
type rosterPush struct {
	seq, base   uint64
	full, delta []presence.Entry
}

// next computes the push of roster cur and makes it the last one.
func (s *rosterSender) next(cur []presence.Entry) rosterPush {
	now := make(map[string]presence.Entry, len(cur))
	var delta []presence.Entry
	for _, e := range cur {
		now[e.User] = e
		if old, ok := s.last[e.User]; !ok || !sameEntry(old, e) {
			delta = append(delta, e)
		}
	}
	for u := range s.last { // gone from the store: offline from this node
		if _, ok := now[u]; !ok {
			gone := presence.Entry{Presence: presence.Presence{User: u}}
			delta = append(delta, gone)
		}
	}
	slices.SortFunc(delta, func(a, b presence.Entry) int {
		if a.User < b.User {
			return -1
		}
		if a.User > b.User {
			return 1
		}
		return 0
	})
	if s.needFull == nil {
		s.needFull = map[string]bool{}
	}
	p := rosterPush{base: s.seq, seq: s.seq + 1, full: cur, delta: delta}
	s.seq++
	s.last = now
	return p
}

// sameEntry compares two entries of one user as a receiver would see
// them: status, note, online count, since and dialogs.
func sameEntry(a, b presence.Entry) bool {
	return a.Presence.Status == b.Presence.Status && a.Note == b.Note && a.Online == b.Online &&
		a.Since.Equal(b.Since) && slices.Equal(a.Dialogs, b.Dialogs)
}

// applyRoster is the receiving side: the users a node's record holds
// after cs, given what it held (users, as of push have). ok is false
// when cs is a delta on another base than have: the record keeps its
// users and the sender is asked for the whole roster.
func applyRoster(users map[string]presence.Entry, have uint64, cs callsResp) (map[string]presence.Entry, uint64, bool) {
	switch {
	case cs.RosterFull:
		out := make(map[string]presence.Entry, len(cs.Users))
		for _, e := range cs.Users {
			out[e.User] = e
		}
		return out, cs.RosterSeq, true
	case cs.RosterSeq == 0: // no roster in this message
		return users, have, true
	case users == nil || have != cs.RosterBase:
		return users, have, false
	case len(cs.Users) == 0:
		return users, cs.RosterSeq, true
	}
	out := maps.Clone(users) // the old map may be in use outside the lock
	for _, e := range cs.Users {
		out[e.User] = e
	}
	return out, cs.RosterSeq, true
}

// boundEntries makes this node's roster fit what every node accepts
// (checkEntries), so that one long note or caller URI cannot get the
// whole call list refused: a note is cut to maxURILen bytes (at a rune
// boundary), an identity longer than that is left out, a dialog whose
// IDs or tags are too long is left out, a user keeps maxUserDialogs
// dialogs (the confirmed first), and a user whose name is too long is
// left out. It reports how many things it changed.
func boundEntries(entries []presence.Entry) ([]presence.Entry, int) {
	changed := 0
	out := entries[:0:0]
	for _, e := range entries {
		if e.User == "" || len(e.User) > maxIDLen {
			changed++
			continue
		}
		if len(e.Note) > maxURILen {
			e.Note = cutRunes(e.Note, maxURILen)
			changed++
		}
		if e.Online > maxSetCalls {
			e.Online = maxSetCalls
			changed++
		}
		if n := len(e.Dialogs); n > 0 {
			ds := make([]presence.Dialog, 0, n)
			for _, d := range e.Dialogs {
				if d.ID == "" || len(d.ID) > maxIDLen || len(d.CallID) > maxIDLen || len(d.LocalTag) > maxIDLen || len(d.RemoteTag) > maxIDLen ||
					d.State >= presence.DialogTerminated {
					changed++
					continue
				}
				if len(d.Local) > maxURILen {
					d.Local = ""
					changed++
				}
				if len(d.Remote) > maxURILen {
					d.Remote = ""
					changed++
				}
				ds = append(ds, d)
			}
			if len(ds) > maxUserDialogs {
				slices.SortStableFunc(ds, func(a, b presence.Dialog) int { return int(b.State) - int(a.State) })
				changed += len(ds) - maxUserDialogs
				ds = ds[:maxUserDialogs]
				slices.SortFunc(ds, func(a, b presence.Dialog) int { return strings.Compare(a.ID, b.ID) })
			}
			e.Dialogs = ds
		}
		out = append(out, e)
	}
	return out, changed
}

// cutRunes cuts s to at most n bytes without splitting a UTF-8 sequence.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
