package cluster

import (
	"context"
	"errors"
	"net/http"
	"sort"

	"github.com/switchboard-voice/switchboard/presence"
)

// rosterResp is a node's presence roster.
type rosterResp struct {
	Node  string              `json:"node"`
	Users []presence.Presence `json:"users"`
}

// statusRank orders statuses for merging one user's presence across
// nodes: a call anywhere beats ringing, which beats away, available and
// offline.
var statusRank = map[presence.Status]int{presence.Offline: 0, presence.Available: 1, presence.Away: 2, presence.Ringing: 3, presence.OnCall: 4}

// Roster returns every user's presence across the cluster: each node is
// asked for its roster and a user's entries are merged — the most
// engaged status wins (on a call > ringing > away > available > offline)
// with its note and time, and online endpoints add up. A node that does
// not answer is reported in the error; the others' entries are returned.
func (n *Node) Roster(ctx context.Context) ([]presence.Presence, error) {
	members := n.Members()
	type result struct {
		users []presence.Presence
		err   error
	}
	results := make(chan result, len(members))
	for _, m := range members {
		go func() {
			var resp rosterResp
			err := n.ask(ctx, m.Addr, msgRoster, struct{}{}, &resp)
			results <- result{resp.Users, err}
		}()
	}
	merged := map[string]presence.Presence{}
	var errs []error
	for range members {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
		}
		for _, p := range r.users {
			merged[p.User] = mergePresence(merged[p.User], p)
		}
	}
	out := make([]presence.Presence, 0, len(merged))
	for _, p := range merged {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out, errors.Join(errs...)
}

// mergePresence merges one node's entry b for a user into a (zero for
// the first).
func mergePresence(a, b presence.Presence) presence.Presence {
	if a.User == "" {
		return b
	}
	online := a.Online + b.Online
	if statusRank[b.Status] > statusRank[a.Status] {
		a = b
	}
	a.Online = online
	return a
}

func (n *Node) servePresence(w http.ResponseWriter, r *http.Request) {
	users, err := n.Roster(r.Context())
	resp := struct {
		Users []presence.Presence `json:"users"`
		Error string              `json:"error,omitempty"`
	}{Users: users}
	if err != nil {
		resp.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}
