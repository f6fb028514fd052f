package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

// A room outlives its host. A node whose legs are in room NAME on
// another node (through relay calls, RoomUserPrefix+NAME) keeps a
// roomRelay for each of them. When the host leaves the membership
// without having ended them (killed, crashed, cut off: its etcd lease
// expires), every such relay is told at once: its member is not hung up
// but re-joined — the node asks NAME's grain again (protoactor
// re-activates it on a survivor, which places the room anew, or adopts a
// room a survivor already re-opened) and puts the member into the room
// at its new host, through a new relay or directly when the new host is
// this node. Every survivor asks the same grain, so they all end in one
// room. A relay that ends with an error (media timeout, a failed dial)
// is re-joined the same way; a relay the live host hung up (the member
// was kicked, the room closed) ends as before. Re-joins are bounded:
// RejoinLimits.

// EventRoomRejoined is the name of the signal (framework EventSignal)
// published on a call whose member was re-joined to its room at another
// host. Its payload is RejoinedData.
const EventRoomRejoined = "room.rejoined"

// RejoinedData is the payload of the EventRoomRejoined signal.
type RejoinedData struct {
	Room    string `json:"room"`
	Host    string `json:"host"`     // the node that hosts the room now
	OldHost string `json:"old_host"` // the node that hosted it before
	Reason  string `json:"reason"`   // why: "host lost", "relay ended: media timeout", ...
}

// Why a relay's host is given up: it left the cluster, or it is
// stopping (HandOver).
const (
	reasonHostLost     = "host lost"
	reasonHostDraining = "host draining"
)

// errHostLost is the cause a relay's attempt is cancelled with when its
// host leaves the cluster or starts draining.
var errHostLost = errors.New("cluster: the room's host left the cluster")

// RejoinLimits bound the re-joins of one member: at most Max within
// Window; the first at once, the next after Backoff, doubled after each
// (at most MaxBackoff); finding a live host takes at most Asks requests
// to the grain within AskWindow, each answered within AskTimeout. Zero
// fields take the defaults (Options.Rejoin).
type RejoinLimits struct {
	Max        int
	Window     time.Duration
	Backoff    time.Duration
	MaxBackoff time.Duration
	Asks       int
	AskWindow  time.Duration
	AskTimeout time.Duration
}

// defaultRejoinLimits: five re-joins a minute, the first at once.
var defaultRejoinLimits = RejoinLimits{Max: 5, Window: time.Minute, Backoff: 250 * time.Millisecond, MaxBackoff: 2 * time.Second,
	Asks: 40, AskWindow: 20 * time.Second, AskTimeout: time.Second}

// withDefaults fills l's zero fields from defaultRejoinLimits.
func (l RejoinLimits) withDefaults() RejoinLimits {
	d := defaultRejoinLimits
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.Max <= 0 {
		l.Max = d.Max
	}
	if l.Asks <= 0 {
		l.Asks = d.Asks
	}
	set(&l.Window, d.Window)
	set(&l.Backoff, d.Backoff)
	set(&l.MaxBackoff, d.MaxBackoff)
	set(&l.AskWindow, d.AskWindow)
	set(&l.AskTimeout, d.AskTimeout)
	return l
}

// rejoinBudget counts one member's re-joins in a sliding window.
type rejoinBudget struct {
	lim   RejoinLimits
	times []time.Time
}

// take records a re-join at now and says whether the budget allows it,
// and how long to wait before it.
func (b *rejoinBudget) take(now time.Time) (bool, time.Duration) {
	keep := b.times[:0]
	for _, t := range b.times {
		if now.Sub(t) < b.lim.Window {
			keep = append(keep, t)
		}
	}
	b.times = keep
	if len(b.times) >= b.lim.Max {
		return false, 0
	}
	wait := time.Duration(0)
	if len(b.times) > 0 {
		wait = b.lim.Backoff
		for range len(b.times) - 1 {
			wait *= 2
		}
		wait = min(wait, b.lim.MaxBackoff)
	}
	b.times = append(b.times, now)
	return true, wait
}

// relayEnd is how one relay to a room's host ended.
type relayEnd struct {
	CallerGone bool   // the member hung up, or its flow's ctx ended
	HostLost   bool   // the host left the cluster (or is leaving)
	HostReason string // reasonHostLost or reasonHostDraining
	Err        error  // the Dial's error (nil when the relay was up and ended)
	Cause      string // the relay leg's end cause ("remote hangup", "media timeout", ...)
}

// decideRejoin says whether a member whose relay ended as e is re-joined
// to its room, and why.
func decideRejoin(e relayEnd) (bool, string) {
	switch {
	case e.CallerGone:
		return false, ""
	case e.HostLost:
		if e.HostReason != "" {
			return true, e.HostReason
		}
		return true, reasonHostLost
	case e.Err != nil:
		if finalDialError(e.Err) || errors.Is(e.Err, framework.ErrLegMoved) {
			return false, "" // a final answer, or the relay leg was moved away on purpose
		}
		return true, "relay failed: " + e.Err.Error()
	case e.Cause == "" || e.Cause == "remote hangup":
		return false, "" // the live host ended it: kicked, or the room closed
	}
	return true, "relay ended: " + e.Cause
}

// finalDialError says whether a relay dial's failure is an answer that
// trying again would not change (4xx but 408, 6xx).
func finalDialError(err error) bool {
	var se *sip.StatusError
	if errors.As(err, &se) {
		return se.Code >= 600 || (se.Code >= 400 && se.Code < 500 && se.Code != 408)
	}
	return errors.Is(err, sip.ErrBusy) || errors.Is(err, sip.ErrDeclined) || errors.Is(err, sip.ErrNotFound)
}

// roomRelay is one leg of this node in a room hosted elsewhere.
type roomRelay struct {
	room     string
	host     string // the host's remote address
	hostName string

	mu     sync.Mutex
	lost   string           // why the host was given up; "" while it hosts
	onLost func(why string) // called once, when the host leaves or drains
}

// hostLost marks the relay's host given up (why: reasonHostLost, ...)
// and calls its onLost once.
func (r *roomRelay) hostLost(why string) {
	r.mu.Lock()
	if r.lost != "" {
		r.mu.Unlock()
		return
	}
	r.lost = why
	f := r.onLost
	r.mu.Unlock()
	if f != nil {
		f(why)
	}
}

// setOnLost sets what happens when the host is given up; if it has been
// already, f runs now.
func (r *roomRelay) setOnLost(f func(why string)) {
	r.mu.Lock()
	r.onLost = f
	lost := r.lost
	r.mu.Unlock()
	if lost != "" {
		f(lost)
	}
}

// addRelay registers r; if its host is no member any more, or drains, r
// is told at once.
func (n *Node) addRelay(r *roomRelay) {
	n.relayMu.Lock()
	n.relays[r] = struct{}{}
	n.relayMu.Unlock()
	switch {
	case !n.isMember(r.host):
		r.hostLost(reasonHostLost)
	case n.isDraining(r.host):
		r.hostLost(reasonHostDraining)
	}
}

func (n *Node) removeRelay(r *roomRelay) {
	n.relayMu.Lock()
	delete(n.relays, r)
	n.relayMu.Unlock()
}

// hostsLeft tells every relay whose host is one of addrs that its host
// is given up (why: reasonHostLost, reasonHostDraining).
func (n *Node) hostsLeft(addrs []string, why string) {
	if len(addrs) == 0 {
		return
	}
	var hit []*roomRelay
	n.relayMu.Lock()
	for r := range n.relays {
		if contains(addrs, r.host) {
			hit = append(hit, r)
		}
	}
	n.relayMu.Unlock()
	if len(hit) > 0 {
		n.log.Warn("cluster: the host of rooms this node relays to is gone; re-joining their members", "hosts", addrs,
			"members", len(hit), "reason", why)
	}
	for _, r := range hit {
		r.hostLost(why)
	}
}

// isMember says whether addr is a member as this node sees it.
func (n *Node) isMember(addr string) bool {
	if addr == n.self {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.members[addr] != nil
}

// isDraining says whether the member at addr is stopping (HandOver).
func (n *Node) isDraining(addr string) bool {
	if addr == n.self {
		return n.draining.Load()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.records[addr]
	return r != nil && r.draining
}

// memberBySIP is the remote address of the member whose SIP address is
// sipAddr ("" if none).
func (n *Node) memberBySIP(sipAddr string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for addr, m := range n.members {
		if m.SIP == sipAddr && sipAddr != "" {
			return addr
		}
	}
	return ""
}

// rejoinHost asks room's grain for the room's host until it names a live
// member, not draining, other than gone ("" for any): the grain's node
// may not have seen the old host leave yet. Bounded by the limits' Asks
// and AskWindow.
func (n *Node) rejoinHost(ctx context.Context, room, gone string) (Member, error) {
	lim := n.rejoin
	deadline := time.Now().Add(lim.AskWindow)
	var last error
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, lim.AskTimeout)
		h, err := n.RoomHost(actx, room)
		cancel()
		if err == nil {
			if (gone == "" || h.Addr != gone) && n.isMember(h.Addr) && !n.isDraining(h.Addr) && (h.Self || h.SIP != "") {
				return h, nil
			}
			err = fmt.Errorf("the grain names %s (%s), which is no live member", h.Node, h.Addr)
		}
		last = err
		if i >= lim.Asks || time.Now().After(deadline) || ctx.Err() != nil {
			return Member{}, fmt.Errorf("cluster: room %s: no live host after %d asks: %w", room, i, last)
		}
		select {
		case <-ctx.Done():
			return Member{}, fmt.Errorf("cluster: room %s: %w", room, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// JoinRoom puts the call's caller into the cluster room of that name,
// wherever the cluster hosts it: with framework's Join when this node is
// the host, else by dialling the host (RoomUserPrefix+room, answered by
// RoomHandler there) and bridging the caller to that relay leg — RTP
// between the two media engines, passed through without transcoding
// when both legs use the same codec. When the host leaves the cluster
// (or the relay ends with an error) the caller stays on the line and is
// re-joined to the room at its new host, within RejoinLimits; its call
// then gets the EventRoomRejoined signal. It returns as Join does when
// the caller hangs up, nil when the live host ends the relay, and an
// error when no host could be reached.
func (n *Node) JoinRoom(ctx context.Context, c *framework.Call, room string, opts framework.JoinOptions) error {
	host, err := n.RoomHost(ctx, room)
	if err != nil {
		return err
	}
	budget := rejoinBudget{lim: n.rejoin}
	for {
		if host.Self {
			return c.Join(ctx, room, opts)
		}
		if host.SIP == "" {
			return fmt.Errorf("cluster: join %s: host %s has not announced its SIP address yet", room, host.Addr)
		}
		end := n.relayOnce(ctx, c, room, host)
		again, why := decideRejoin(end)
		if !again {
			if end.CallerGone && end.Err == nil {
				return framework.ErrHangup
			}
			return end.Err
		}
		ok, wait := budget.take(time.Now())
		if !ok {
			c.Logger().Warn("cluster: room re-joined too often; giving up", "room", room, "reason", why,
				"max", n.rejoin.Max, "window", n.rejoin.Window.String())
			return fmt.Errorf("cluster: room %s: re-joined %d times within %s; giving up (%s)", room, n.rejoin.Max, n.rejoin.Window, why)
		}
		c.Logger().Warn("cluster: relay to the room's host ended; re-joining", "room", room, "host", host.Node, "reason", why)
		start := time.Now()
		if wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		gone := ""
		if end.HostLost {
			gone = host.Addr
		}
		next, err := n.rejoinHost(ctx, room, gone)
		if err != nil {
			c.Logger().Warn("cluster: room re-join failed", "room", room, "error", err)
			return err
		}
		c.Logger().Info("cluster: re-joining the room at its host", "room", room, "host", next.Node, "old_host", host.Node,
			"reason", why, "took", time.Since(start).Round(time.Millisecond).String())
		data := RejoinedData{Room: room, Host: next.Node, OldHost: host.Node, Reason: why}
		if err := c.Signal(ctx, EventRoomRejoined, data); err != nil {
			return err
		}
		host = next
	}
}

// relayOnce dials the room's host and bridges the caller to the relay
// until one of them ends or the host leaves the cluster.
func (n *Node) relayOnce(ctx context.Context, c *framework.Call, room string, host Member) relayEnd {
	c.Logger().Info("cluster: joining a room on another node", "room", room, "host", host.Node)
	if err := c.Answer(ctx); err != nil {
		return relayEnd{CallerGone: true, Err: err}
	}
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var why atomic.Value
	r := &roomRelay{room: room, host: host.Addr}
	r.setOnLost(func(reason string) {
		why.Store(reason)
		cancel(errHostLost)
	})
	n.addRelay(r)
	defer n.removeRelay(r)

	sub := c.Subscribe(ctx, framework.FromNow)
	w := &relayWatch{n: n, ended: make(chan string, 1)}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(wctx, c, sub, room)
	}()
	defer func() {
		wcancel()
		<-done
		sub.Close()
	}()
	err := c.Dial(actx, "sip:"+RoomUserPrefix+room+"@"+host.SIP, framework.DialOptions{Timeout: 10 * time.Second, Headers: n.relayHeaders(RoomUserPrefix + room)})
	switch {
	case ctx.Err() != nil || c.Context().Err() != nil || errors.Is(err, framework.ErrHangup):
		return relayEnd{CallerGone: true, Err: err}
	case errors.Is(context.Cause(actx), errHostLost):
		reason, _ := why.Load().(string)
		return relayEnd{HostLost: true, HostReason: reason}
	case err != nil:
		return relayEnd{Err: err}
	}
	// The relay leg ended; its leg.ended event was published before the
	// Dial's answer, so the watcher has it at once.
	select {
	case cause := <-w.ended:
		return relayEnd{Cause: cause}
	case <-time.After(time.Second):
		return relayEnd{}
	}
}

// relayWatch follows a call while its relay is up: once the relay is
// bridged it remembers the relay leg (Node.Calls lists the room's end of
// it with this call) and logs both legs' codecs (framework passes
// packets through when they are the same); it reports the relay leg's
// end cause.
type relayWatch struct {
	n     *Node
	ended chan string
}

func (w *relayWatch) run(ctx context.Context, c *framework.Call, sub *framework.Subscription, room string) {
	relayLeg := ""
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			return
		}
		switch {
		case ev.Type == framework.EventLegBridged && relayLeg == "":
			relayLeg = ev.LegID
			w.n.trackRelay(relayLeg, c.ID())
			legs, err := c.Legs(ctx)
			if err == nil && len(legs) == 2 {
				a, b := legs[0].Codec(), legs[1].Codec()
				c.Logger().Info("cluster: relay to the room's host bridged", "room", room, "leg_id", legs[1].ID(),
					"codec", a, "relay_codec", b, "passthrough", a == b)
			}
		case ev.Type == framework.EventLegEnded && ev.LegID == relayLeg && relayLeg != "":
			w.ended <- endCause(ev.Data)
			return
		}
	}
}

// endCause is the cause of a leg.ended event.
func endCause(data any) string {
	switch d := data.(type) {
	case framework.EndData:
		return d.Cause
	case *framework.EndData:
		return d.Cause
	}
	return ""
}

// rejoinMoved puts a leg that was moved into room (through the relay
// call relayID to the host that left) into the room at its new host:
// Node.Move's path, from this node. Bounded by the limits; when every
// attempt fails the old relay is hung up (with the leg).
func (n *Node) rejoinMoved(legID, relayID string, old *roomRelay, why string) {
	room, oldHost := old.room, old.host
	ctx, cancel := context.WithTimeout(n.ctx, n.rejoin.AskWindow+10*time.Second)
	defer cancel()
	budget := rejoinBudget{lim: n.rejoin}
	var last error
	for {
		if n.srv.Leg(legID) == nil {
			return // it hung up meanwhile
		}
		ok, wait := budget.take(time.Now())
		if !ok || ctx.Err() != nil {
			break
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		host, err := n.rejoinHost(ctx, room, oldHost)
		if err == nil {
			req := moveReq{LegID: legID, Room: room}
			if !host.Self {
				req.SIP = host.SIP
			}
			if err = n.moveLocal(ctx, req); err == nil {
				n.log.Info("cluster: moved leg re-joined its room at the new host", "leg_id", legID, "room", room, "host", host.Node)
				if !host.Self {
					n.signalMovedRejoin(ctx, legID, RejoinedData{Room: room, Host: host.Node, OldHost: old.hostName, Reason: why})
				}
				return
			}
		}
		last = err
		n.log.Warn("cluster: moved leg's room re-join failed", "leg_id", legID, "room", room, "error", err)
	}
	n.log.Warn("cluster: giving up re-joining a moved leg's room; hanging up its relay", "leg_id", legID, "room", room, "error", last)
	if h := n.srv.Call(relayID); h != nil {
		_ = h.Hangup(context.WithoutCancel(ctx))
	}
}

// signalMovedRejoin publishes EventRoomRejoined on the relay call a
// re-joined moved leg is in now.
func (n *Node) signalMovedRejoin(ctx context.Context, legID string, data RejoinedData) {
	l := n.srv.Leg(legID)
	if l == nil {
		return
	}
	where := l.Where()
	id, ok := strings.CutPrefix(where, "call:")
	c := n.srv.Call(id)
	if !ok || c == nil {
		n.log.Warn("cluster: re-join signal: the moved leg is in no call", "leg_id", legID, "where", where)
		return
	}
	if err := c.Signal(ctx, EventRoomRejoined, data); err != nil {
		n.log.Warn("cluster: re-join signal", "leg_id", legID, "call_id", id, "error", err)
		return
	}
	n.log.Info("cluster: re-join signalled", "leg_id", legID, "call_id", id)
}

// nodeName is the name of the node at addr, as far as this node knows.
func (n *Node) nodeName(addr string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if m := n.members[addr]; m != nil && m.Node != "" {
		return m.Node
	}
	if r := n.records[addr]; r != nil && r.node != "" {
		return r.node
	}
	return addr
}

// HandOver moves the rooms this node hosts to other nodes before it
// stops (switchboard serve calls it on SIGTERM, before the server
// drains). The node tells the others it is draining (its call list,
// sent to every member at once): room grains then place its rooms anew
// on a node that is not draining, and the other nodes' members of those
// rooms re-join them there. Its own members of those rooms are moved
// into the rooms at their new hosts through relay calls, which the drain
// lets run like any other call. It returns once every member here was
// moved or ctx ended; later calls do nothing. A room's recording and
// mixer state stay behind: the room at its new host starts anew.
func (n *Node) HandOver(ctx context.Context) {
	if n.draining.Swap(true) {
		return
	}
	start := time.Now()
	n.pushCallsCtx(ctx)
	if n.placement() == n.self {
		n.log.Info("cluster: no other node to hand rooms over to; they stay here for the drain")
		return
	}
	moved, failed := 0, 0
	for _, room := range n.srv.Rooms() {
		members, err := n.srv.RoomMembers(ctx, room)
		if err != nil {
			n.log.Warn("cluster: hand-over: room members", "room", room, "error", err)
			continue
		}
		var local []string
		for _, m := range members {
			// A relay from another node: that node re-joins its member.
			if !strings.HasPrefix(m.User, RoomUserPrefix) {
				local = append(local, m.ID)
			}
		}
		if len(local) == 0 {
			continue
		}
		host, err := n.rejoinHost(ctx, room, n.self)
		if err != nil {
			n.log.Warn("cluster: hand-over: no other host for the room; its members stay here for the drain", "room", room, "error", err)
			failed += len(local)
			continue
		}
		for _, id := range local {
			if err := n.moveLocal(ctx, moveReq{LegID: id, Room: room, SIP: host.SIP}); err != nil {
				n.log.Warn("cluster: hand-over: member not moved", "room", room, "leg_id", id, "host", host.Node, "error", err)
				failed++
				continue
			}
			moved++
		}
	}
	n.log.Info("cluster: rooms handed over", "moved", moved, "failed", failed, "took", time.Since(start).Round(time.Millisecond).String())
}
