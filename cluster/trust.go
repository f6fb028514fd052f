package cluster

import (
	"context"
	"net"
	"net/netip"

	"github.com/switchboard-voice/switchboard/framework"
)

// MembersOnly wraps a handler of the relay calls nodes place to each
// other (RoomUserPrefix, CallUserPrefix, UserUserPrefix). A relay call
// whose INVITE did not come from a member's SIP address is refused with
// 403, so a caller elsewhere on the network cannot join rooms, calls or
// users through these routes. Relays go straight from node to node (not
// through a proxy in front), so their source is the calling node's.
func (n *Node) MembersOnly(h framework.Handler) framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		src := c.SignalingSource()
		if !memberSource(n.Members(), src) {
			n.netLog.Warn("cluster: relay call from an address that is no member's refused with 403",
				"user", c.User(), "source", src.String(), "call_id", c.ID())
			return c.Reject(ctx, 403)
		}
		return h.ServeCall(ctx, c)
	})
}

// memberSource reports whether ip is the host of a member's announced
// SIP address (host:port; a host name is looked up).
func memberSource(members []Member, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, m := range members {
		host, _, err := net.SplitHostPort(m.SIP)
		if err != nil || host == "" {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			if a.Unmap() == ip {
				return true
			}
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				return true
			}
		}
	}
	return false
}
