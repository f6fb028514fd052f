package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
)

// contactDialer makes registrations cluster-wide: Dial of a user name that
// is registered on another node asks every other node for its bindings.
// A binding over UDP is dialled from this node straight to the contact
// (to the address the REGISTER came from, as the registering node would),
// so the call's media stays on the node whose flow dialled. A binding
// over TCP, TLS or WebSocket is a connection only the registering node
// holds: this node then calls that node (UserUserPrefix+user, over the
// nodes' own SIP), whose UserHandler dials the user over the connection
// and bridges the two, so the media goes through the registering node.
// It is forked with local SIP like any framework.Dialer; a user
// registered nowhere else is ErrNotFound.
type contactDialer struct{ n *Node }

func (d contactDialer) Dial(ctx context.Context, target string, opts framework.DialOptions) (framework.Signaling, error) {
	if strings.ContainsAny(target, "@:") || opts.Trunk != "" || strings.HasPrefix(target, UserUserPrefix) {
		return nil, fmt.Errorf("cluster: dial %s: %w", target, framework.ErrNotFound) // URIs and trunks are local SIP's
	}
	if _, relayed := opts.Headers[relayHeader]; relayed {
		// UserHandler dialling for another node: this node's own
		// registrations only, or two nodes holding the user over TCP
		// would hand the call back and forth.
		return nil, fmt.Errorf("cluster: dial %s for another node: %w", target, framework.ErrNotFound)
	}
	nodes, err := d.n.contactsOf(ctx, target)
	if err != nil && len(nodes) == 0 {
		d.n.log.Warn("cluster: could not ask every node for a user's contacts", "user", target, "error", err)
	}
	var usable []sip.Binding
	via := "" // SIP address of a node holding a connection-bound registration
	for _, nb := range nodes {
		for _, b := range nb.bindings {
			if b.Transport == "" || strings.EqualFold(b.Transport, "UDP") {
				usable = append(usable, b)
			} else if via == "" && nb.sip != "" {
				via = nb.sip
			}
		}
	}
	so := sip.DialOptions{Timeout: opts.Timeout, FromUser: opts.CallerID.Number, FromName: opts.CallerID.Name,
		Private: opts.CallerID.Private, Headers: opts.Headers}
	if len(usable) == 0 && via != "" {
		uri := "sip:" + UserUserPrefix + target + "@" + via
		so.Destination, so.Transport = via, "UDP"
		// A From host of no node's: the registering node takes the call
		// as a guest's (as a caller from elsewhere calling the user)
		// instead of challenging a caller ID that claims its own domain.
		so.FromHost = relayFromHost
		so.Headers = mergeHeaders(so.Headers, d.n.relayHeaders(UserUserPrefix+target))
		leg, err := d.n.srv.Agent().DialURI(ctx, uri, so)
		if err != nil {
			return nil, fmt.Errorf("cluster: dial %s through %s: %w", target, via, err)
		}
		d.n.log.Info("cluster: dialled a user registered over a connection on another node, through that node", "user", target, "via", via, "call_id", leg.ID())
		return leg, nil
	}
	if len(usable) == 0 {
		// Not registered on another node (sip.ErrNotRegistered matches
		// ErrNotFound too): the same error local SIP gives, so callers
		// see one "not registered" whichever dialer answers first.
		return nil, fmt.Errorf("cluster: dial %s: no contact on another node: %w", target, sip.ErrNotRegistered)
	}
	// Ring the first (newest) contact; forking to several contacts of a
	// user is the registering node's job when it dials itself.
	b := usable[0]
	so.Destination, so.Transport, so.Route = b.Source.String(), "UDP", b.Path
	leg, err := d.n.srv.Agent().DialURI(ctx, b.Contact, so)
	if err != nil {
		return nil, fmt.Errorf("cluster: dial %s at %s: %w", target, b.Contact, err)
	}
	d.n.log.Info("cluster: dialled a user registered on another node", "user", target, "contact", b.Contact, "call_id", leg.ID())
	// The user's phone is on a call carried here: this node's presence
	// says so (the registering node does not see the call), and the
	// merged view shows the user on a call on every node.
	dlg := presence.Dialog{ID: leg.ID(), CallID: leg.ID(), Direction: presence.Recipient, State: presence.DialogConfirmed, Local: b.Contact}
	pres := d.n.srv.Presence()
	pres.UpdateDialog(target, dlg)
	go func() {
		<-leg.Done()
		dlg.State = presence.DialogTerminated
		pres.UpdateDialog(target, dlg)
	}()
	return leg, nil
}

// Contacts returns the live registrations of user on the other nodes
// (this node's own are local SIP's), newest first.
func (n *Node) Contacts(ctx context.Context, user string) ([]sip.Binding, error) {
	nodes, err := n.contactsOf(ctx, user)
	var out []sip.Binding
	for _, nb := range nodes {
		out = append(out, nb.bindings...)
	}
	return out, err
}

// nodeBindings are one other node's bindings of a user and the SIP
// address the node is called at.
type nodeBindings struct {
	sip      string
	bindings []sip.Binding
}

// contactsOf asks every other node for user's bindings.
func (n *Node) contactsOf(ctx context.Context, user string) ([]nodeBindings, error) {
	var out []nodeBindings
	var errs []error
	for _, m := range n.Members() {
		if m.Self {
			continue
		}
		var resp contactsResp
		if err := n.ask(ctx, m.Addr, msgContacts, contactsReq{User: user}, &resp); err != nil {
			errs = append(errs, err)
			continue
		}
		if len(resp.Bindings) > 0 {
			out = append(out, nodeBindings{sip: m.SIP, bindings: resp.Bindings})
		}
	}
	return out, errors.Join(errs...)
}

// UserUserPrefix starts the request-URI user of the calls one node makes
// to another to reach a user registered there over TCP, TLS or WebSocket
// ("cluster-user-alice"). Route it to Node.UserHandler.
const UserUserPrefix = "cluster-user-"

// relayFromHost is the From host of the calls a node makes to another to
// reach a user there (RFC 6761 .invalid: names no one's domain).
const relayFromHost = "cluster.invalid"

// relayHeader marks the INVITE UserHandler sends to a user for another
// node; the contact dialer leaves such a dial to local SIP.
const relayHeader = "X-Switchboard-Cluster-Relay"

// UserHandler answers a call from another node for a user registered on
// this node (UserUserPrefix+user): it dials the user here (over the
// connection the registration came on) and bridges the two, passing on
// the caller ID; the caller hears ringing meanwhile. A user not
// registered here is 404, a failed dial ends the call with its cause.
func (n *Node) UserHandler() framework.Handler {
	return framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		user := strings.TrimPrefix(c.User(), UserUserPrefix)
		r := n.srv.Agent().Registrar()
		if user == "" || user == c.User() || r == nil || len(r.Lookup(user)) == 0 {
			return c.Reject(ctx, 404)
		}
		err := c.Dial(ctx, user, framework.DialOptions{Timeout: 60 * time.Second, CallerID: c.Caller(),
			Headers: map[string]string{relayHeader: "user"}})
		switch {
		case err == nil, errors.Is(err, framework.ErrHangup):
			return nil
		case errors.Is(err, framework.ErrBusy):
			return c.Reject(ctx, 486)
		}
		c.Logger().Info("cluster: could not reach a user for another node", "user", user, "error", err)
		return c.Reject(ctx, 480)
	})
}

// mergeHeaders returns a's headers with b's added (b wins).
func mergeHeaders(a, b map[string]string) map[string]string {
	if len(a) == 0 {
		return b
	}
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}
