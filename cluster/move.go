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

// CallUserPrefix starts the request-URI user of the relay calls one node
// makes to another to put a leg into a call there ("cluster-call-ID").
// Route it to Node.CallHandler.
const CallUserPrefix = "cluster-call-"

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

// moveReq asks the node holding a leg to move it into a room or a call.
// Across nodes (SIP set) the leg's node places a relay call to the
// destination's node: RoomUserPrefix+Room or CallUserPrefix+Call there.
type moveReq struct {
	LegID string `json:"call_id"` // a leg ID, or a call ID (its caller)
	Room  string `json:"room,omitempty"`
	Call  string `json:"call,omitempty"`
	SIP   string `json:"sip,omitempty"` // the destination's node; "" for this node
}

// Destination is where Node.Move takes a leg: a room of the cluster
// (hosted wherever its grain says) or a call on any node. Set one.
type Destination struct {
	Room string // a room name
	Call string // a call ID
}

func (d Destination) String() string {
	if d.Room != "" {
		return "room:" + d.Room
	}
	return "call:" + d.Call
}

// MoveToRoom moves the caller of call callID into room on the node named
// roomNode; with roomNode "" the room is the cluster's room of that name,
// wherever its grain places it (see Move).
func (n *Node) MoveToRoom(ctx context.Context, callID, room, roomNode string) error {
	if !validRoomName(room) {
		return fmt.Errorf("cluster: move %s: bad room name %q", callID, room)
	}
	if roomNode == "" {
		return n.Move(ctx, callID, Destination{Room: room})
	}
	var sipAddr, addr string
	for _, m := range n.Members() {
		if m.Node == roomNode {
			sipAddr, addr = m.SIP, m.Addr
		}
	}
	if addr == "" || (sipAddr == "" && addr != n.self) {
		return fmt.Errorf("cluster: move %s: no node %q with a known SIP address", callID, roomNode)
	}
	return n.moveTo(ctx, callID, moveReq{LegID: callID, Room: room, SIP: sipAddr}, addr)
}

// Move moves a leg (a leg ID, or a call ID for the call's caller), on
// whichever node it is, to dst: a room of the cluster or a call on any
// node. The leg's SIP dialog and media stay on its node. When the
// destination is on that node too it is framework's Move; otherwise the
// leg's node places a relay call to the destination's node and moves the
// leg into it, so its audio crosses as RTP between the two media engines
// (passed through without transcoding when the codecs match). A leg that
// was already in a relay call leaves it, and that relay ends. The node
// holding the leg is found from the replicated call lists (a call ID)
// before the others are asked.
func (n *Node) Move(ctx context.Context, legID string, dst Destination) error {
	if legID == "" || len(legID) > maxIDLen {
		return fmt.Errorf("cluster: move: bad leg ID")
	}
	var destAddr string
	req := moveReq{LegID: legID, Room: dst.Room, Call: dst.Call}
	switch {
	case dst.Room != "" && dst.Call == "":
		host, err := n.RoomHost(ctx, dst.Room)
		if err != nil {
			return fmt.Errorf("cluster: move %s: %w", legID, err)
		}
		destAddr, req.SIP = host.Addr, host.SIP
	case dst.Call != "" && dst.Room == "" && len(dst.Call) <= maxIDLen:
		destAddr = n.ownerOf(dst.Call)
		if destAddr == "" {
			owner, err := n.findCall(ctx, dst.Call)
			if err != nil {
				return fmt.Errorf("cluster: move %s to %s: %w", legID, dst, err)
			}
			destAddr = owner
		}
		if h, ok := n.hostInfo(destAddr); ok {
			req.SIP = h.SIP
		}
	default:
		return fmt.Errorf("cluster: move %s: want one destination, a room or a call", legID)
	}
	return n.moveTo(ctx, legID, req, destAddr)
}

// moveTo sends req to the node holding the leg: the likely owner first,
// then the others, until one has it. destAddr is the destination's node:
// the leg's node, when it is that one, moves it locally.
func (n *Node) moveTo(ctx context.Context, legID string, req moveReq, destAddr string) error {
	members := n.ownerFirst(legID)
	var errs []error
	for _, m := range members {
		r := req
		if m.Addr == destAddr {
			r.SIP = "" // the destination is on the leg's own node
		} else if r.SIP == "" {
			errs = append(errs, fmt.Errorf("node at %s has not announced its SIP address", destAddr))
			continue
		}
		var resp struct{}
		err := n.ask(ctx, m.Addr, msgMove, r, &resp)
		var re *errRemote
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re) && re.reason == "not found":
			continue
		}
		return fmt.Errorf("cluster: move %s: %w", legID, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("cluster: move %s: %w", legID, errors.Join(append([]error{ErrCallNotFound}, errs...)...))
	}
	return fmt.Errorf("cluster: move %s: %w", legID, ErrCallNotFound)
}

// findCall asks every node for its calls and returns the address of the
// one that has id.
func (n *Node) findCall(ctx context.Context, id string) (string, error) {
	calls, err := n.Calls(ctx)
	for _, c := range calls {
		if c.ID == id {
			for _, m := range n.Members() {
				if m.Node == c.Node {
					return m.Addr, nil
				}
			}
		}
	}
	if err != nil {
		return "", errors.Join(ErrCallNotFound, err)
	}
	return "", ErrCallNotFound
}

// moveLocal carries out a moveReq on this node.
func (n *Node) moveLocal(ctx context.Context, req moveReq) error {
	legID := req.LegID
	if n.srv.Leg(legID) == nil {
		c := n.srv.Call(legID)
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
		legID = legs[0].ID()
	}
	from := n.srv.Leg(legID).Where()
	if req.SIP == "" {
		dst := framework.ToRoom(req.Room)
		if req.Call != "" {
			dst = framework.ToCall(req.Call)
		}
		if err := n.srv.Move(ctx, legID, dst, framework.JoinOptions{}); err != nil {
			return err
		}
		n.log.Info("cluster: leg moved on this node", "leg_id", legID, "from", from, "to", dst.String())
		return nil
	}
	relay := make(chan string, 1)
	user := RoomUserPrefix + req.Room
	if req.Call != "" {
		if !validRoomName(req.Call) {
			return fmt.Errorf("call ID %q cannot travel in a request URI", req.Call)
		}
		user = CallUserPrefix + req.Call
	}
	target := "sip:" + user + "@" + req.SIP
	// A leg moved into a room on another node is re-joined to the room
	// elsewhere when that node leaves the cluster (rejoin.go).
	var rr *roomRelay
	if req.Room != "" {
		if host := n.memberBySIP(req.SIP); host != "" {
			rr = &roomRelay{room: req.Room, host: host, hostName: n.nodeName(host)}
			n.addRelay(rr)
		}
	}
	if err := n.srv.Originate(ctx, target, framework.DialOptions{Timeout: 10 * time.Second, Headers: n.relayHeaders(user)}, n.relayFlow(relay, rr)); err != nil {
		if rr != nil {
			n.removeRelay(rr)
		}
		return err
	}
	var relayID string
	select {
	case relayID = <-relay:
		n.setRelay(relayID, req.session()) // before the leg moves in: a browser's feed asks RelayTarget then
	case <-ctx.Done():
		return ctx.Err()
	}
	n.trackRelay(relayID, relayID)
	if err := n.srv.Move(ctx, legID, framework.ToCall(relayID), framework.JoinOptions{}); err != nil {
		if h := n.srv.Call(relayID); h != nil {
			_ = h.Hangup(context.WithoutCancel(ctx))
		}
		return err
	}
	if rr != nil {
		rr.setOnLost(func(why string) { go n.rejoinMoved(legID, relayID, rr, why) })
	}
	attrs := []any{"call_id", req.LegID, "leg_id", legID, "from", from, "to", target, "relay_call_id", relayID}
	if a, b := n.srv.Leg(legID), n.srv.Leg(relayID); a != nil && b != nil {
		// framework bridges two legs by passing packets through when the
		// codecs (name and clock rate) are the same.
		attrs = append(attrs, "codec", a.Codec(), "relay_codec", b.Codec(), "passthrough", a.Codec() == b.Codec())
	}
	if req.Room != "" {
		attrs = append(attrs, "room", req.Room)
	}
	n.log.Info("cluster: leg moved to another node", attrs...)
	return nil
}

// relayFlow runs the call that carries a moved leg to another node's
// room: it reports its ID, then ends the call as soon as either leg ends
// or the moved leg moves out; rr (nil for a call) is forgotten then.
func (n *Node) relayFlow(id chan<- string, rr *roomRelay) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		if rr != nil {
			defer n.removeRelay(rr)
		}
		id <- c.ID()
		self := "call:" + c.ID()
		for ev := range c.Events() {
			if ev.Type == framework.EventLegEnded || (ev.Type == framework.EventLegMoved && movedFrom(ev.Data) == self) {
				return c.Hangup(context.WithoutCancel(ctx))
			}
		}
		return nil
	}
}

// movedFrom is where a leg.moved event's leg came from.
func movedFrom(data any) string {
	switch d := data.(type) {
	case framework.MoveData:
		return d.From
	case *framework.MoveData:
		return d.From
	}
	return ""
}

// CallHandler answers a relay call from another node and moves its leg
// into the call its request URI names (CallUserPrefix+ID) on this node.
func (n *Node) CallHandler() framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		id := strings.TrimPrefix(c.User(), CallUserPrefix)
		if id == "" || id == c.User() || n.srv.Call(id) == nil {
			return c.Reject(ctx, 404)
		}
		if err := c.Answer(ctx); err != nil {
			return err
		}
		legs, err := c.Legs(ctx)
		if err != nil || len(legs) == 0 {
			return err
		}
		return n.srv.Move(ctx, legs[0].ID(), framework.ToCall(id), framework.JoinOptions{})
	})
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
