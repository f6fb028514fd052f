package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/framework"
)

// Rooms are cluster identities. Every node registers the grain kind
// "switchboard-room"; protoactor's identity lookup (disthash: rendezvous
// hashing over the members) activates the grain of room NAME on exactly
// one member, and every node's request for NAME reaches that grain. The
// grain decides, once, which node hosts the room's mixer — a node whose
// room of that name is already live (its own, or one the replicated
// lists name), else its own node — and answers that node to everyone
// until the host leaves the cluster. So a Join or Move into "red" from
// any node reaches the same mixer; the host's legs join it directly and
// the others' legs reach it through a relay call (SIP + RTP) between the
// two nodes' media engines.
//
// When membership changes, disthash may move the grain to another node
// (the old activation is stopped); the new one finds the live room in the
// replicated lists and keeps pointing at it, so a room never splits while
// its host lives.

// roomKind is the grain kind of rooms.
const roomKind = "switchboard-room"

// whereRoomReq asks a room's grain which node hosts the room.
type whereRoomReq struct {
	Room string `json:"room"`
}

// roomHost is a room grain's answer: the hosting node.
type roomHost struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	SIP  string `json:"sip,omitempty"`
}

// validRoomName says whether a room name can travel in a request URI
// (RoomUserPrefix+name) and as a grain identity.
func validRoomName(room string) bool {
	return room != "" && len(room) <= maxIDLen && !strings.ContainsAny(room, "@:;<>/?# \t\r\n\"'\\")
}

// roomGrain is the cluster identity of one room: it knows which node
// hosts the room.
type roomGrain struct {
	n    *Node
	room string
	host string // the hosting node's remote address; "" until asked
}

func (g *roomGrain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		g.room = m.Identity.Identity
	case *pcluster.GrainRequest:
		msg, err := decodeRequest(m)
		wr, ok := msg.(whereRoomReq)
		if err == nil && (!ok || wr.Room != g.room) {
			err = fmt.Errorf("room grain %q: unexpected %s", g.room, m.MessageTypeName)
		}
		if err != nil {
			g.n.netLog.Warn("cluster: bad request to a room grain", "room", g.room, "error", err)
			ctx.Respond(&pcluster.GrainErrorResponse{Reason: "bad request", Message: err.Error()})
			return
		}
		ctx.Respond(respond(m, g.where()))
	}
}

// where returns the room's host, placing the room on first use or when
// its host has left or is draining.
func (g *roomGrain) where() roomHost {
	n := g.n
	if g.host != "" {
		h, ok := n.hostInfo(g.host)
		if ok && !n.isDraining(g.host) {
			return h
		}
		n.log.Info("cluster: room's host left or is draining; placing it again", "room", g.room, "old_host", g.host)
	}
	g.host = n.liveRoomHost(g.room)
	if g.host == "" {
		g.host = n.placement()
	}
	h, _ := n.hostInfo(g.host)
	n.log.Info("cluster: room placed", "room", g.room, "host", h.Node, "host_addr", h.Addr)
	return h
}

// hostInfo describes the member at addr, if it is one.
func (n *Node) hostInfo(addr string) (roomHost, bool) {
	if addr == n.self {
		return roomHost{Node: n.opts.Node, Addr: n.self, SIP: n.sipAddr()}, true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	m := n.members[addr]
	if m == nil {
		return roomHost{}, false
	}
	return roomHost{Node: m.Node, Addr: addr, SIP: m.SIP}, true
}

// liveRoomHost is the address of a member, not draining, with a live
// room of that name: this node, or one whose last list names it ("" if
// none).
func (n *Node) liveRoomHost(room string) string {
	if !n.draining.Load() && slices.Contains(n.srv.Rooms(), room) {
		return n.self
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	best := ""
	for addr, r := range n.records {
		if n.members[addr] != nil && !r.draining && slices.Contains(r.rooms, room) && (best == "" || addr < best) {
			best = addr
		}
	}
	return best
}

// placement is where a grain on this node places a new room: this node,
// unless it is draining; then the member with the lowest address that is
// not draining and has announced its SIP address (this node when there
// is none).
func (n *Node) placement() string {
	if !n.draining.Load() {
		return n.self
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	best := ""
	for addr, m := range n.members {
		if r := n.records[addr]; addr != n.self && m.SIP != "" && r != nil && !r.draining && (best == "" || addr < best) {
			best = addr
		}
	}
	if best == "" {
		return n.self
	}
	return best
}

// RoomHost returns the member that hosts room, asking the room's grain
// (one request through protoactor's identity lookup; the grain places a
// new room on its own node).
func (n *Node) RoomHost(ctx context.Context, room string) (Member, error) {
	if !validRoomName(room) {
		return Member{}, fmt.Errorf("cluster: room %q: bad name", room)
	}
	req := &pcluster.GrainRequest{MessageTypeName: msgWhereRoom, MessageData: marshal(whereRoomReq{Room: room})}
	timeout := n.opts.RequestTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return Member{}, fmt.Errorf("cluster: room %s: where: %w", room, context.DeadlineExceeded)
	}
	res, err := n.cl.Request(room, roomKind, req, pcluster.WithTimeout(timeout))
	if err != nil {
		return Member{}, fmt.Errorf("cluster: room %s: where: %w", room, err)
	}
	switch r := res.(type) {
	case *pcluster.GrainResponse:
		var h roomHost
		if err := json.Unmarshal(r.MessageData, &h); err != nil {
			return Member{}, fmt.Errorf("cluster: room %s: where: %w", room, err)
		}
		return Member{Node: h.Node, Addr: h.Addr, SIP: h.SIP, Self: h.Addr == n.self}, nil
	case *pcluster.GrainErrorResponse:
		return Member{}, fmt.Errorf("cluster: room %s: where: %w", room, &errRemote{r.Reason, r.Message})
	}
	return Member{}, fmt.Errorf("cluster: room %s: where: unexpected answer %T", room, res)
}

// JoinRoomHandler is a flow that joins every call to the cluster room
// name (JoinRoom).
func (n *Node) JoinRoomHandler(room string) framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return n.JoinRoom(ctx, c, room, framework.JoinOptions{})
	})
}
