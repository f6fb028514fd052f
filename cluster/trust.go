package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

// MembersOnly wraps a handler of the relay calls nodes place to each
// other (RoomUserPrefix, CallUserPrefix, UserUserPrefix), so a caller
// elsewhere on the network cannot join rooms, calls or users through
// these routes: a relay call is refused with 403 unless
//   - with a cluster secret (Options.Secret): its INVITE carries a valid,
//     fresh, unreplayed RelayHeader signature for its request-URI user;
//   - without one: its INVITE came from a member's SIP address. Relays go
//     straight from node to node (not through a proxy in front), so their
//     source is the calling node's; this check is only as good as the
//     network's protection against spoofed source addresses.
func (n *Node) MembersOnly(h framework.Handler) framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		src := c.SignalingSource()
		if n.signer != nil {
			if err := n.signer.verify(c.Header(RelayHeader), c.User(), time.Now()); err != nil {
				n.netLog.Warn("cluster: relay call without a valid signature refused with 403",
					"user", c.User(), "source", src.String(), "error", err, "call_id", c.ID())
				return c.Reject(ctx, 403)
			}
			return h.ServeCall(ctx, c)
		}
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

// RelayHeader carries a node's signature on the relay INVITEs it sends
// to another node when the cluster has a secret (Options.Secret):
// "v1 UNIX-SECONDS NONCE MAC", MAC = base64url(HMAC-SHA256(secret,
// "v1 UNIX-SECONDS NONCE USER")) over the request-URI user (for example
// cluster-room-sales). The receiving node takes a relay only with a
// valid signature at most relayWindow old whose nonce it has not seen.
const RelayHeader = "X-Switchboard-Relay"

// relayWindow is how far a relay signature's time may be from ours.
const relayWindow = 30 * time.Second

// maxRelayNonces bounds the nonces remembered against replay (a relay
// per call moved, over a minute: far above what a node places).
const maxRelayNonces = 100_000

// minSecret is the shortest cluster secret Join accepts.
const minSecret = 16

// relaySigner signs and checks relay INVITEs with the cluster's secret.
type relaySigner struct {
	key  []byte
	mu   sync.Mutex
	seen map[string]time.Time // nonce → when it may be forgotten
}

func (s *relaySigner) mac(ts, nonce, user string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("v1 " + ts + " " + nonce + " " + user))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sign returns the RelayHeader value for a relay INVITE to user.
func (s *relaySigner) sign(user string, now time.Time) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	ts, nonce := strconv.FormatInt(now.Unix(), 10), hex.EncodeToString(b[:])
	return "v1 " + ts + " " + nonce + " " + s.mac(ts, nonce, user)
}

// verify checks a RelayHeader value for a relay INVITE to user and
// remembers its nonce; the error says what is wrong, for the log.
func (s *relaySigner) verify(v, user string, now time.Time) error {
	if v == "" {
		return errors.New("no " + RelayHeader + " header")
	}
	f := strings.Fields(v)
	if len(f) != 4 || f[0] != "v1" || len(f[2]) != 24 || len(f[3]) > 64 {
		return errors.New("malformed " + RelayHeader + " header")
	}
	sec, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return errors.New("malformed time in " + RelayHeader)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > relayWindow || d < -relayWindow {
		return fmt.Errorf("relay signature %s old (window %s)", d.Round(time.Second), relayWindow)
	}
	if !hmac.Equal([]byte(f[3]), []byte(s.mac(f[1], f[2], user))) {
		return errors.New("bad relay signature")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]time.Time{}
	}
	if _, dup := s.seen[f[2]]; dup {
		return errors.New("relay signature replayed")
	}
	if len(s.seen) >= maxRelayNonces {
		for n, until := range s.seen {
			if now.After(until) {
				delete(s.seen, n)
			}
		}
		if len(s.seen) >= maxRelayNonces {
			return errors.New("too many relay calls to remember their nonces")
		}
	}
	s.seen[f[2]] = now.Add(2 * relayWindow)
	return nil
}

// relayHeaders returns the headers of a relay INVITE to user: its
// signature when the cluster has a secret, else none.
func (n *Node) relayHeaders(user string) map[string]string {
	if n.signer == nil {
		return nil
	}
	return map[string]string{RelayHeader: n.signer.sign(user, time.Now())}
}
