package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/switchboard-voice/switchboard/presence"
)

// rosterResp is a node's presence roster.
type rosterResp struct {
	Node  string              `json:"node"`
	Users []presence.Presence `json:"users"`
}

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
// the first): presence.Merge, the same rule each node's store applies to
// the other nodes' views.
func mergePresence(a, b presence.Presence) presence.Presence { return presence.Merge(a, b) }

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

// Presence across nodes, pushed: every node's own presence roster (its
// registrations, browsers, and the dialogs of the calls it carries) rides
// along with its call list to every other node (within 100 ms of a change,
// and every SyncInterval). Each node merges its own store with the others'
// last rosters, so Node.Presence and Node.WatchPresence give the same
// answer on every node, without asking anyone. A node's store
// keeps its own sources apart (LocalRoster is what travels); SIP
// SUBSCRIBE and the browsers' roster are served from
// it too: remergeLoop feeds the other nodes' rosters into it (feedRemote),
// so subscribers and browsers on any node see the cluster's presence.

// watchPresence marks the list dirty and re-merges on every change of
// this node's own presence store.
func (n *Node) watchPresence() {
	defer n.wg.Done()
	for n.ctx.Err() == nil {
		sub := n.srv.Presence().Subscribe(n.ctx, presence.SubscribeOptions{Buffer: 1024})
		for range sub.C {
			select {
			case n.dirty <- struct{}{}:
			default:
			}
			n.kickRemerge()
		}
		// Overflowed (or ended with ctx): subscribe again and re-merge.
		n.kickRemerge()
	}
}

// kickRemerge asks remergeLoop to recompute the merged presence (a burst
// of changes costs one pass). A no-op on a Node without the loop.
func (n *Node) kickRemerge() {
	if n.remergeCh == nil {
		return
	}
	select {
	case n.remergeCh <- struct{}{}:
	default:
	}
}

// remergeLoop recomputes the merged presence when asked.
func (n *Node) remergeLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.remergeCh:
			n.remerge()
		}
	}
}

// mergedRoster is every user's presence merged over this node's store and
// the other nodes' last rosters. It costs a pass over every node's roster.
func (n *Node) mergedRoster() map[string]presence.Presence {
	merged := map[string]presence.Presence{}
	for _, p := range n.srv.Presence().LocalRoster() {
		merged[p.User] = mergePresence(merged[p.User], p)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for addr, r := range n.records {
		if n.members[addr] == nil {
			continue
		}
		for _, e := range r.users {
			merged[e.User] = mergePresence(merged[e.User], e.Presence)
		}
	}
	return merged
}

// Presence returns user's presence merged over the cluster (the same on
// every node once the rosters have travelled, within ~100 ms); ok is false
// when no node knows the user.
func (n *Node) Presence(user string) (p presence.Presence, ok bool) {
	p, ok = n.mergedRoster()[user]
	return p, ok
}

// PresenceWatch is a subscription to the cluster's merged presence.
type PresenceWatch struct {
	// C carries a user's merged presence each time it changes (first
	// every known user's, at once). It is closed when the watch ends:
	// ctx, Close, or a reader more than its buffer behind (then watch
	// again).
	C <-chan presence.Presence
	c chan presence.Presence
	n *Node
}

// WatchPresence starts a watch on the merged presence of every user.
func (n *Node) WatchPresence(ctx context.Context) *PresenceWatch {
	c := make(chan presence.Presence, 1024)
	w := &PresenceWatch{C: c, c: c, n: n}
	n.presMu.Lock()
	if n.lastMerged == nil {
		n.lastMerged = n.mergedRoster()
	}
	users := make([]string, 0, len(n.lastMerged))
	for u := range n.lastMerged {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if len(c) < cap(c) {
			c <- n.lastMerged[u]
		}
	}
	n.watchers[w] = struct{}{}
	n.presMu.Unlock()
	context.AfterFunc(ctx, w.Close)
	return w
}

// Close ends the watch.
func (w *PresenceWatch) Close() {
	w.n.presMu.Lock()
	defer w.n.presMu.Unlock()
	if _, ok := w.n.watchers[w]; ok {
		delete(w.n.watchers, w)
		close(w.c)
	}
}

// remerge recomputes the merged roster and sends each user whose merged
// presence changed to every watcher.
func (n *Node) remerge() {
	n.presMu.Lock()
	defer n.presMu.Unlock()
	n.feedRemote()
	now := n.mergedRoster()
	var changed []presence.Presence
	for u, p := range now {
		if old, ok := n.lastMerged[u]; !ok || old != p {
			changed = append(changed, p)
		}
	}
	for u, old := range n.lastMerged {
		if _, ok := now[u]; !ok { // its only node left: offline
			changed = append(changed, presence.Presence{User: u, Status: presence.Offline, Since: time.Now(), Note: old.Note})
		}
	}
	n.lastMerged = now
	sort.Slice(changed, func(i, j int) bool { return changed[i].User < changed[j].User })
	for w := range n.watchers {
		for _, p := range changed {
			select {
			case w.c <- p:
			default:
				delete(n.watchers, w)
				close(w.c)
				n.log.Warn("cluster: a presence watcher fell behind; its watch ended")
			}
			if _, ok := n.watchers[w]; !ok {
				break
			}
		}
	}
}

// feedRemote hands the other live nodes' last rosters to this node's own
// store (presence.Store.SetRemoteEntries, keyed by node address), so SIP
// SUBSCRIBE, the browsers' roster and Server.Presence show the cluster's
// presence too; a node that left has its entries withdrawn. The store
// keeps them apart from its own sources: what this node tells the others
// (LocalEntries) never includes them. Called with presMu held.
func (n *Node) feedRemote() {
	n.mu.Lock()
	rosters := make(map[string]map[string]presence.Entry, len(n.records))
	for addr, r := range n.records {
		if n.members[addr] == nil || addr == n.self {
			continue
		}
		rosters[addr] = r.users
	}
	n.mu.Unlock()
	store := n.srv.Presence()
	for addr := range n.fed {
		if _, ok := rosters[addr]; !ok {
			store.SetRemote(addr, nil)
			delete(n.fed, addr)
		}
	}
	addrs := make([]string, 0, len(rosters))
	for addr := range rosters {
		addrs = append(addrs, addr)
	}
	sort.Strings(addrs)
	for _, addr := range addrs {
		users := make([]presence.Entry, 0, len(rosters[addr])) // a node with no users: still known
		for _, e := range rosters[addr] {
			users = append(users, e)
		}
		store.SetRemoteEntries(addr, users)
		n.fed[addr] = struct{}{}
	}
}

// servePresenceEvents streams the merged presence as Server-Sent Events:
// every known user's first, then each change ("event: presence").
func (n *Node) servePresenceEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	watch := n.WatchPresence(r.Context())
	defer watch.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for p := range watch.C {
		b, _ := json.Marshal(p)
		if _, err := fmt.Fprintf(w, "event: presence\ndata: %s\n\n", b); err != nil {
			return
		}
		flusher.Flush()
	}
}

func (n *Node) serveUserPresence(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	p, ok := n.Presence(user)
	if !ok {
		http.Error(w, "no such user", http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
