package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

// RoomUserPrefix starts the request-URI user of the calls one node makes
// to another to put a leg into a room there ("cluster-room-NAME"). Route
// it to RoomHandler: router.Handle(cluster.RoomUserPrefix+"*", cluster.RoomHandler()).
const RoomUserPrefix = "cluster-room-"

// RoomHandler answers a call from another node and joins it to the room
// its request URI names, for as long as the other node keeps it up.
func RoomHandler() framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		room := strings.TrimPrefix(c.User(), RoomUserPrefix)
		if room == "" || room == c.User() {
			return c.Reject(ctx, 404)
		}
		return c.Join(ctx, room, framework.JoinOptions{})
	})
}

// moveReq asks the node holding a call to move its caller into a room on
// the node at SIP (this node's own room when SIP is "").
type moveReq struct {
	CallID string `json:"call_id"`
	Room   string `json:"room"`
	SIP    string `json:"sip,omitempty"`
}

// MoveToRoom moves the caller of call callID, on whichever node it is,
// into room on the node named roomNode ("" or the call's own node: a
// local Move). Across nodes the call's node places a call to the room's
// node (SIP, user RoomUserPrefix+room) and moves the caller's leg into
// it: the caller's media stays where it was and crosses to the room's
// node as RTP between the two media engines, passed through without
// transcoding when the codecs match. The caller's original flow ends, as
// with framework's Move. The room's node must route RoomUserPrefix to
// RoomHandler.
func (n *Node) MoveToRoom(ctx context.Context, callID, room, roomNode string) error {
	if room == "" || len(room) > maxIDLen || strings.ContainsAny(room, "@:;<> ") {
		return fmt.Errorf("cluster: move %s: bad room name %q", callID, room)
	}
	calls, err := n.Calls(ctx)
	owner := ""
	for _, c := range calls {
		if c.ID == callID {
			owner = c.Node
		}
	}
	if owner == "" {
		if err != nil {
			return fmt.Errorf("cluster: move %s: %w", callID, errors.Join(ErrCallNotFound, err))
		}
		return fmt.Errorf("cluster: move %s: %w", callID, ErrCallNotFound)
	}
	req := moveReq{CallID: callID, Room: room}
	var ownerAddr string
	for _, m := range n.Members() {
		if m.Node == owner {
			ownerAddr = m.Addr
		}
		if roomNode != "" && roomNode != owner && m.Node == roomNode {
			req.SIP = m.SIP
		}
	}
	if roomNode != "" && roomNode != owner && req.SIP == "" {
		return fmt.Errorf("cluster: move %s: no node %q with a known SIP address", callID, roomNode)
	}
	if ownerAddr == "" {
		return fmt.Errorf("cluster: move %s: node %q is not a member", callID, owner)
	}
	var resp struct{}
	return n.ask(ctx, ownerAddr, msgMove, req, &resp)
}

// moveLocal carries out a moveReq on this node.
func (n *Node) moveLocal(ctx context.Context, req moveReq) error {
	c := n.srv.Call(req.CallID)
	if c == nil {
		return ErrCallNotFound
	}
	legs, err := c.Legs(ctx)
	if err != nil {
		return err
	}
	if len(legs) == 0 {
		return ErrCallNotFound
	}
	caller := legs[0].ID()
	if req.SIP == "" {
		return n.srv.Move(ctx, caller, framework.ToRoom(req.Room), framework.JoinOptions{})
	}
	relay := make(chan string, 1)
	target := "sip:" + RoomUserPrefix + req.Room + "@" + req.SIP
	if err := n.srv.Originate(ctx, target, framework.DialOptions{Timeout: 10 * time.Second}, relayFlow(relay)); err != nil {
		return err
	}
	var relayID string
	select {
	case relayID = <-relay:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := n.srv.Move(ctx, caller, framework.ToCall(relayID), framework.JoinOptions{}); err != nil {
		if h := n.srv.Call(relayID); h != nil {
			_ = h.Hangup(context.WithoutCancel(ctx))
		}
		return err
	}
	n.log.Info("cluster: caller moved to a room on another node", "call_id", req.CallID, "leg_id", caller, "room", req.Room,
		"room_node", req.SIP, "relay_call_id", relayID)
	return nil
}

// relayFlow runs the call that carries a moved leg to another node's
// room: it reports its ID, then ends the call as soon as either leg ends.
func relayFlow(id chan<- string) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		id <- c.ID()
		for ev := range c.Events() {
			if ev.Type == framework.EventLegEnded {
				return c.Hangup(context.WithoutCancel(ctx))
			}
		}
		return nil
	}
}

// sipAddr is the SIP address other nodes call this one at.
func (n *Node) sipAddr() string {
	a := n.srv.SIPAddr()
	if !a.IsValid() {
		return ""
	}
	host := a.Addr().String()
	if a.Addr().IsUnspecified() {
		host, _, _ = net.SplitHostPort(n.self)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.Port())))
}
