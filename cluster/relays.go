package cluster

import (
	"sort"
	"strings"
	"time"
)

// A relay is a call one node places to another for a session that spans
// both: a leg moved into a room or call there (moveLocal), a caller
// bridged to a room hosted there (JoinRoom), a user reached through the
// node holding their connection (the contact dialer). Its far end is a
// call on the other node whose ID is the relay leg's (its SIP Call-ID).
// The placing node remembers its relay legs and sends them, with the
// call holding each, along with its call list; so Node.Calls lists each
// such session once (the far end folded into the call that placed it,
// which names the relay in Relays), and a lost node's relay ends get no
// "node lost" CDR of their own: the call they served has one, written by
// its own node when it ends or as lost when that node dies.

// RelayLeg is one of a listed call's relays to another node.
type RelayLeg struct {
	// Leg is the relay leg's ID on the call's node, and the ID of the
	// call at the far end.
	Leg string `json:"leg"`
	// Node is the far end's node ("" when no node lists it now).
	Node string `json:"node,omitempty"`
}

// relayLeg is a relay leg this node placed.
type relayLeg struct {
	call  string    // the call it was placed for ("" until known)
	since time.Time // when it was placed
}

// maxRelays bounds the relay legs a node remembers.
const maxRelays = 100_000

// relayGrace is how long a relay leg placed but not (yet) found among
// the server's legs is remembered.
const relayGrace = 30 * time.Second

// trackRelay remembers a relay leg placed for call (the call it will be
// in; "" when only the leg's own holder will tell).
func (n *Node) trackRelay(leg, call string) {
	if leg == "" {
		return
	}
	n.relayMu.Lock()
	defer n.relayMu.Unlock()
	if len(n.relayOut) >= maxRelays {
		n.pruneRelaysLocked(time.Now())
		if len(n.relayOut) >= maxRelays {
			n.log.Warn("cluster: too many relay legs remembered; this one is listed as a call of its own", "leg_id", leg)
			return
		}
	}
	if n.relayOut == nil {
		n.relayOut = map[string]relayLeg{}
	}
	n.relayOut[leg] = relayLeg{call: call, since: time.Now()}
}

// pruneRelaysLocked forgets relay legs that ended (not among the
// server's legs after the grace period).
func (n *Node) pruneRelaysLocked(now time.Time) {
	for id, r := range n.relayOut {
		if now.Sub(r.since) > relayGrace && n.srv.Leg(id) == nil {
			delete(n.relayOut, id)
		}
	}
}

// relayRefs lists this node's live relay legs with the call holding
// each now.
func (n *Node) relayRefs() []relayRef {
	now := time.Now()
	n.relayMu.Lock()
	n.pruneRelaysLocked(now)
	out := make([]relayRef, 0, len(n.relayOut))
	for id, r := range n.relayOut {
		call := r.call
		if l := n.srv.Leg(id); l != nil {
			if c, ok := strings.CutPrefix(l.Where(), "call:"); ok {
				call = c
			}
		}
		if call != "" {
			out = append(out, relayRef{Leg: id, Call: call})
		}
	}
	n.relayMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Leg < out[j].Leg })
	return out
}

// foldRelays lists each session once: a call on one node whose ID is a
// relay leg another node placed (refs: node name → its relay refs) is
// folded into the call holding that leg, which names it in Relays. A far
// end whose placing call is not in the list stays as it is.
func foldRelays(all []NodeCall, refs map[string][]relayRef) []NodeCall {
	type holder struct{ node, call string }
	byLeg := map[string]holder{}
	for node, rs := range refs {
		for _, r := range rs {
			byLeg[r.Leg] = holder{node, r.Call}
		}
	}
	if len(byLeg) == 0 {
		return all
	}
	index := make(map[holder]int, len(all))
	for i, c := range all {
		index[holder{c.Node, c.ID}] = i
	}
	drop := make([]bool, len(all))
	folded := map[string]bool{}
	for i, c := range all {
		h, ok := byLeg[c.ID]
		if !ok || h.node == c.Node {
			continue // not a far end: the relay's own call on its node
		}
		j, ok := index[h]
		if !ok {
			continue
		}
		all[j].Relays = append(all[j].Relays, RelayLeg{Leg: c.ID, Node: c.Node})
		drop[i], folded[c.ID] = true, true
	}
	// A relay whose far end is not listed (its node did not answer, or
	// the relay is being set up or torn down) is still named, without a
	// node, on the call holding it.
	legs := make([]string, 0, len(byLeg))
	for leg := range byLeg {
		legs = append(legs, leg)
	}
	sort.Strings(legs)
	for _, leg := range legs {
		if folded[leg] {
			continue
		}
		if j, ok := index[byLeg[leg]]; ok {
			all[j].Relays = append(all[j].Relays, RelayLeg{Leg: leg})
		}
	}
	out := all[:0]
	for i, c := range all {
		if !drop[i] {
			out = append(out, c)
		}
	}
	return out
}
