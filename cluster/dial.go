package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
)

// contactDialer makes registrations cluster-wide: Dial of a user name that
// is registered on another node asks every other node for its bindings
// and sends the INVITE from this node straight to the contact (to the
// address the REGISTER came from, as the registering node would), so the
// call's media stays on the node whose flow dialled. It is forked with
// local SIP like any framework.Dialer; a user registered nowhere else is
// ErrNotFound. A binding over TCP, TLS or WebSocket is a connection the
// registering node holds: those are not reachable from another node yet.
type contactDialer struct{ n *Node }

func (d contactDialer) Dial(ctx context.Context, target string, opts framework.DialOptions) (framework.Signaling, error) {
	if strings.ContainsAny(target, "@:") || opts.Trunk != "" {
		return nil, fmt.Errorf("cluster: dial %s: %w", target, framework.ErrNotFound) // URIs and trunks are local SIP's
	}
	bindings, err := d.n.Contacts(ctx, target)
	if err != nil && len(bindings) == 0 {
		d.n.log.Warn("cluster: could not ask every node for a user's contacts", "user", target, "error", err)
	}
	var usable []sip.Binding
	for _, b := range bindings {
		if b.Transport == "" || strings.EqualFold(b.Transport, "UDP") {
			usable = append(usable, b)
		}
	}
	if len(usable) == 0 {
		// Not registered on another node (sip.ErrNotRegistered matches
		// ErrNotFound too): the same error local SIP gives, so callers
		// see one "not registered" whichever dialer answers first.
		return nil, fmt.Errorf("cluster: dial %s: no UDP contact on another node: %w", target, sip.ErrNotRegistered)
	}
	so := sip.DialOptions{Timeout: opts.Timeout, FromUser: opts.CallerID.Number, FromName: opts.CallerID.Name,
		Private: opts.CallerID.Private, Headers: opts.Headers}
	// Ring the first (newest) contact; forking to several contacts of a
	// user is the registering node's job when it dials itself.
	b := usable[0]
	so.Destination, so.Transport = b.Source.String(), "UDP"
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
	var out []sip.Binding
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
		out = append(out, resp.Bindings...)
	}
	return out, errors.Join(errs...)
}
