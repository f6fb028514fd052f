package cluster

import (
	"context"
	"sort"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
)

// Every node keeps a copy of every other node's call list: each node sends
// its list to the others within 100 ms of a call starting or ending, and
// every SyncInterval anyway. When a node leaves the cluster without
// saying goodbye (its etcd lease expires, or automanaged stops hearing
// it), the surviving node with the lowest address writes a CDR with cause
// "node lost" for every call in the lost node's last list. A call started
// on a node less than ~100 ms before it died may be missing from that
// list, and a lost call's end time is when its loss was noticed.

// watchCalls marks the call list dirty on every call start and end.
func (n *Node) watchCalls(sub *framework.Subscription) {
	defer n.wg.Done()
	defer sub.Close()
	for {
		ev, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		switch ev.Type {
		case framework.EventCallStarted:
			n.keepCall(ev.CallID)
		case framework.EventCallEnded:
			n.callEnded(ev.CallID)
		}
		switch ev.Type {
		case framework.EventCallStarted, framework.EventCallEnded, framework.EventOverflow,
			framework.EventLegJoined, framework.EventLegLeft, framework.EventLegMoved: // rooms come and go with their legs
			select {
			case n.dirty <- struct{}{}:
			default:
			}
		}
	}
}

// syncLoop sends this node's call list to the others when it changed
// (at most every 100 ms) and every SyncInterval.
func (n *Node) syncLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(n.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.dirty:
			select { // let a burst of starts and ends settle
			case <-n.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		n.pushCalls()
	}
}

// pushCalls sends this node's calls to every other member, concurrently.
func (n *Node) pushCalls() {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.RequestTimeout)
	defer cancel()
	n.pushCallsCtx(ctx)
}

func (n *Node) pushCallsCtx(ctx context.Context) {
	n.pushMu.Lock()
	defer n.pushMu.Unlock()
	entries, cut := boundEntries(n.srv.Presence().LocalEntries())
	if cut > 0 {
		n.netLog.Warn("cluster: roster entries cut to the bounds other nodes accept (a long note or caller URI, or too many dialogs)", "changes", cut)
	}
	rp := n.roster.next(entries)
	base := callsResp{Node: n.opts.Node, Addr: n.self, SIP: n.sipAddr(), Calls: n.srv.Calls(), Rooms: n.srv.Rooms(),
		Relays: n.relayRefs(), RosterSeq: rp.seq, Draining: n.draining.Load()}
	full, delta := base, base
	full.Users, full.RosterFull = rp.full, true
	delta.Users, delta.RosterBase = rp.delta, rp.base
	type result struct {
		addr       string
		sentFull   bool
		ok, asking bool
	}
	var members []Member
	for _, m := range n.Members() {
		if !m.Self {
			members = append(members, m)
		}
	}
	results := make(chan result, len(members))
	for _, m := range members {
		set := delta
		if rp.base == 0 || n.roster.needFull[m.Addr] {
			set = full
		}
		go func() {
			var ack callSetAck
			err := n.ask(ctx, m.Addr, msgCallSet, set, &ack)
			if err != nil && ctx.Err() == nil {
				n.log.Debug("cluster: call list not delivered", "to", m.Addr, "error", err)
			}
			results <- result{addr: m.Addr, sentFull: set.RosterFull, ok: err == nil, asking: ack.NeedRoster}
		}()
	}
	again := false
	for range members {
		r := <-results
		switch {
		case !r.ok || r.asking:
			// Undelivered (it may or may not have applied it) or out of
			// step: the whole roster next time, soon.
			n.roster.needFull[r.addr] = true
			again = again || r.asking
		case r.sentFull:
			delete(n.roster.needFull, r.addr)
		}
	}
	for addr := range n.roster.needFull { // members that left
		if !n.isMember(addr) {
			delete(n.roster.needFull, addr)
		}
	}
	if again {
		select {
		case n.dirty <- struct{}{}:
		default:
		}
	}
}

// storeRecord keeps another node's call list and applies its roster;
// the answer asks for the whole roster when a delta cannot be applied.
func (n *Node) storeRecord(cs callsResp) callSetAck {
	calls := make(map[string]framework.CallInfo, len(cs.Calls))
	for _, c := range cs.Calls {
		calls[c.ID] = c
	}
	relays := make(map[string]string, len(cs.Relays))
	for _, r := range cs.Relays {
		relays[r.Leg] = r.Call
	}
	n.mu.Lock()
	if _, gone := n.lost[cs.Addr]; gone {
		n.mu.Unlock()
		return callSetAck{} // a late list from a node already declared lost
	}
	var users map[string]presence.Entry
	var have uint64
	old := n.records[cs.Addr]
	if old != nil {
		users, have = old.users, old.rosterSeq
	}
	startsDraining := cs.Draining && (old == nil || !old.draining)
	users, have, ok := applyRoster(users, have, cs)
	if !ok {
		n.netLog.Debug("cluster: a roster delta out of step; asking for the whole roster", "from", cs.Addr, "have", have, "base", cs.RosterBase)
	}
	n.records[cs.Addr] = &record{node: cs.Node, sip: cs.SIP, calls: calls, rooms: cs.Rooms, users: users, rosterSeq: have,
		relays: relays, seen: time.Now(), draining: cs.Draining}
	if m := n.members[cs.Addr]; m != nil {
		m.Node, m.SIP = cs.Node, cs.SIP
	}
	n.kickRemerge()
	n.mu.Unlock()
	if startsDraining {
		// Its rooms move: this node's members in them re-join elsewhere.
		n.hostsLeft([]string{cs.Addr}, reasonHostDraining)
	}
	return callSetAck{NeedRoster: !ok}
}

// topologyLoop follows membership: new members are sent our calls at
// once; members that left have their calls ended by the lowest survivor.
func (n *Node) topologyLoop() {
	defer n.wg.Done()
	for {
		var t *pcluster.ClusterTopology
		select {
		case <-n.ctx.Done():
			return
		case t = <-n.topo:
		}
		n.applyTopology(t)
	}
}

func (n *Node) applyTopology(t *pcluster.ClusterTopology) {
	now := time.Now()
	selfRelays := n.relayRefs()
	n.mu.Lock()
	current := map[string]bool{n.self: true}
	for _, m := range t.Members {
		current[m.Address()] = true
	}
	joined := false
	for addr := range current {
		if n.members[addr] == nil {
			m := &Member{Addr: addr}
			if r := n.records[addr]; r != nil {
				m.Node, m.SIP = r.node, r.sip
			}
			n.members[addr] = m
			delete(n.lost, addr) // a node restarted on the same address
			joined = true
			n.log.Info("cluster: node joined", "addr", addr)
		}
	}
	var gone []string
	for addr := range n.members {
		if !current[addr] {
			gone = append(gone, addr)
		}
	}
	for _, m := range t.Left {
		if a := m.Address(); a != n.self && n.members[a] != nil && !contains(gone, a) {
			gone = append(gone, a)
		}
	}
	var lostCalls []lostCall
	// The far ends of relays are not calls of their own: the call that
	// placed each relay gets the CDR (from its node, or as lost here).
	relayEnds := map[string]struct{}{}
	if len(gone) > 0 {
		for _, r := range n.records {
			for leg := range r.relays {
				relayEnds[leg] = struct{}{}
			}
		}
		for _, ref := range selfRelays {
			relayEnds[ref.Leg] = struct{}{}
		}
	}
	for _, addr := range gone {
		delete(n.members, addr)
		n.lost[addr] = now
		r := n.records[addr]
		delete(n.records, addr)
		n.log.Warn("cluster: node left", "addr", addr, "peer", nameOf(r, addr), "calls", lenOf(r))
		if r == nil || !n.writesCDRsLocked() {
			continue
		}
		for _, c := range r.calls {
			if _, done := n.ended[c.ID]; done {
				continue
			}
			if _, relay := r.relays[c.ID]; !relay {
				if _, end := relayEnds[c.ID]; end {
					n.log.Info("cluster: a lost node's end of a relay; the call that placed it has the CDR", "call_id", c.ID, "lost_node", r.node)
					continue
				}
			}
			n.ended[c.ID] = struct{}{}
			lostCalls = append(lostCalls, lostCall{node: r.node, info: c})
		}
	}
	n.mu.Unlock()
	sort.Slice(lostCalls, func(i, j int) bool { return lostCalls[i].info.Start.Before(lostCalls[j].info.Start) })
	for _, lc := range lostCalls {
		n.writeLostCDR(lc, now)
	}
	n.kickRemerge() // members that left take their rosters with them
	if joined {
		select {
		case n.dirty <- struct{}{}:
		default:
		}
	}
}

type lostCall struct {
	node string
	info framework.CallInfo
}

// writesCDRsLocked: the surviving member with the lowest address writes
// the lost nodes' CDRs (every survivor computes the same answer from the
// same membership).
func (n *Node) writesCDRsLocked() bool {
	for addr := range n.members {
		if addr < n.self {
			return false
		}
	}
	return true
}

// writeLostCDR logs a lost call's CDR, as the server logs its own, and
// hands it to Options.OnLostCall.
func (n *Node) writeLostCDR(lc lostCall, end time.Time) {
	cdr := framework.CDR{CallID: lc.info.ID, From: lc.info.From, To: lc.info.To, User: lc.info.User,
		Start: lc.info.Start, End: end, Duration: end.Sub(lc.info.Start), Cause: CauseNodeLost}
	n.log.Info("cdr", "call_id", cdr.CallID, "user", cdr.User, "from", cdr.From, "cause", cdr.Cause,
		"lost_node", lc.node, "duration", cdr.Duration.Round(time.Millisecond).String())
	if n.opts.OnLostCall != nil {
		func() {
			defer func() {
				if r := recover(); r != nil {
					n.log.Error("cluster: OnLostCall panicked", "call_id", cdr.CallID, "panic", r)
				}
			}()
			n.opts.OnLostCall(cdr)
		}()
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func nameOf(r *record, addr string) string {
	if r != nil && r.node != "" {
		return r.node
	}
	return addr
}

func lenOf(r *record) int {
	if r == nil {
		return 0
	}
	return len(r.calls)
}
