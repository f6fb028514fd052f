package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
)

// Messages between node actors are protobuf on the wire, as protoactor's
// remote wants: a cluster.GrainRequest whose MessageTypeName names one of
// the plain-data types below and whose MessageData is that value as JSON;
// the answer is a cluster.GrainResponse the same way, or a
// cluster.GrainErrorResponse. No generated code of ours is needed.
const (
	msgListCalls = "switchboard.ListCalls" // struct{} -> callsResp
	msgHangup    = "switchboard.Hangup"    // hangupReq -> hangupResp
	msgContacts  = "switchboard.Contacts"  // contactsReq -> contactsResp
	msgCallSet   = "switchboard.CallSet"   // callsResp -> struct{}
	msgMove      = "switchboard.Move"      // moveReq -> struct{}
	msgRoster    = "switchboard.Roster"    // struct{} -> rosterResp
	msgWhereRoom = "switchboard.WhereRoom" // whereRoomReq -> roomHost (to a room grain)
	msgEvents    = "switchboard.Events"    // eventsReq -> eventsResp
)

// callsResp is a node's call list (the answer to ListCalls, and the
// CallSet a node pushes to the others).
type callsResp struct {
	Node  string               `json:"node"`
	Addr  string               `json:"addr"`
	SIP   string               `json:"sip,omitempty"` // where other nodes call this one
	Calls []framework.CallInfo `json:"calls"`
	Rooms []string             `json:"rooms,omitempty"` // the rooms live on the node
	// Users is the node's own presence roster, each user with their
	// dialogs on the node: all of it when RosterFull, else only the users
	// whose entry changed since the push numbered RosterBase. RosterSeq
	// numbers this push (per sender, from 1).
	Users      []presence.Entry `json:"users,omitempty"`
	RosterSeq  uint64           `json:"roster_seq,omitempty"`
	RosterBase uint64           `json:"roster_base,omitempty"`
	RosterFull bool             `json:"roster_full,omitempty"`
	// Relays are the node's relay legs to other nodes and the calls
	// holding them: the far end of each is a call there with the leg's ID.
	Relays []relayRef `json:"relays,omitempty"`
	// Draining: the node is stopping; the rooms it hosts move elsewhere
	// (Node.HandOver).
	Draining bool `json:"draining,omitempty"`
}

// relayRef is one relay leg a node placed to another node, and the call
// on the placing node that holds it.
type relayRef struct {
	Leg  string `json:"leg"`
	Call string `json:"call"`
}

// callSetAck answers a CallSet: NeedRoster asks the sender for its whole
// roster (the receiver missed a push, or never had one).
type callSetAck struct {
	NeedRoster bool `json:"need_roster,omitempty"`
}

// rosterReq asks for a node's presence roster.
type rosterReq struct{}

type hangupReq struct {
	ID string `json:"id"`
}

type hangupResp struct {
	Found bool `json:"found"`
}

type contactsReq struct {
	User string `json:"user"`
}

type contactsResp struct {
	Node     string        `json:"node"`
	Bindings []sip.Binding `json:"bindings"`
}

// errRemote is an error a node answered with.
type errRemote struct{ reason, msg string }

func (e *errRemote) Error() string { return e.reason + ": " + e.msg }

// nodeActor is a node's actor: it answers the other nodes' requests. It
// never waits on the network: a hang-up (which waits for BYE) runs in a
// goroutine that answers the requester itself.
type nodeActor struct{ n *Node }

func (a *nodeActor) Receive(ctx actor.Context) {
	req, ok := ctx.Message().(*pcluster.GrainRequest)
	if !ok {
		return // lifecycle messages
	}
	n := a.n
	msg, err := decodeRequest(req)
	if err != nil {
		n.netLog.Warn("cluster: bad request from another node", "type", req.MessageTypeName, "sender", ctx.Sender().String(), "error", err)
		ctx.Respond(&pcluster.GrainErrorResponse{Reason: "bad request", Message: err.Error()})
		return
	}
	if mr, ok := msg.(moveReq); ok {
		sender := ctx.Sender()
		go func() {
			reply := n.moveReply(mr)
			if sender != nil {
				n.system.Root.Send(sender, reply)
			}
		}()
		return
	}
	if er, ok := msg.(eventsReq); ok {
		sender := ctx.Sender()
		go func() { // waits for events
			reply := respond(req, n.eventsLocal(er))
			if sender != nil {
				n.system.Root.Send(sender, reply)
			}
		}()
		return
	}
	if hr, ok := msg.(hangupReq); ok {
		sender := ctx.Sender()
		go func() {
			reply := n.hangupLocal(hr.ID)
			if sender != nil {
				n.system.Root.Send(sender, reply)
			}
		}()
		return
	}
	ctx.Respond(n.handle(req.MessageTypeName, msg))
}

// Bounds on what another node may send.
const (
	maxIDLen    = 256
	maxSetCalls = 1_000_000
	// maxUserDialogs bounds one user's dialogs in a roster entry, and
	// maxURILen a dialog's identities and a user's note.
	maxUserDialogs = 64
	maxURILen      = 1024
)

// checkEntries bounds a roster another node sent: user names, notes,
// statuses, and each user's dialogs (count, IDs, tags, identities).
func checkEntries(users []presence.Entry) error {
	for i, u := range users {
		if u.User == "" || len(u.User) > maxIDLen || len(u.Note) > maxURILen || u.Online < 0 || u.Online > maxSetCalls {
			return fmt.Errorf("roster entry %d: want a user name of 1 to %d bytes, a note of at most %d and a sane online count", i, maxIDLen, maxURILen)
		}
		if _, err := u.Status.MarshalText(); err != nil {
			return fmt.Errorf("roster entry %d: %w", i, err)
		}
		if len(u.Dialogs) > maxUserDialogs {
			return fmt.Errorf("roster entry %d: %d dialogs, want at most %d", i, len(u.Dialogs), maxUserDialogs)
		}
		for j, d := range u.Dialogs {
			if d.ID == "" || len(d.ID) > maxIDLen || len(d.CallID) > maxIDLen || len(d.LocalTag) > maxIDLen || len(d.RemoteTag) > maxIDLen ||
				len(d.Local) > maxURILen || len(d.Remote) > maxURILen || d.State >= presence.DialogTerminated || d.Direction > presence.Recipient {
				return fmt.Errorf("roster entry %d, dialog %d: want an ID, tags and identities within bounds and a live state", i, j)
			}
		}
	}
	return nil
}

// decodeRequest reads a request another node sent: one of the message
// types, its JSON valid and within bounds. It never panics.
func decodeRequest(req *pcluster.GrainRequest) (any, error) {
	switch req.MessageTypeName {
	case msgListCalls:
		return struct{}{}, nil
	case msgRoster:
		return rosterReq{}, nil
	case msgContacts:
		var cr contactsReq
		if err := json.Unmarshal(req.MessageData, &cr); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		if cr.User == "" || len(cr.User) > maxIDLen {
			return nil, fmt.Errorf("%s: want a user name of 1 to %d bytes", req.MessageTypeName, maxIDLen)
		}
		return cr, nil
	case msgCallSet:
		var cs callsResp
		if err := json.Unmarshal(req.MessageData, &cs); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		if cs.Addr == "" || len(cs.Addr) > maxIDLen || len(cs.Node) > maxIDLen || len(cs.Calls) > maxSetCalls || len(cs.Rooms) > maxSetCalls ||
			len(cs.Users) > maxSetCalls || len(cs.Relays) > maxSetCalls {
			return nil, fmt.Errorf("%s: want a node's address, name and at most %d calls", req.MessageTypeName, maxSetCalls)
		}
		if err := checkEntries(cs.Users); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		for _, r := range cs.Relays {
			if r.Leg == "" || len(r.Leg) > maxIDLen || r.Call == "" || len(r.Call) > maxIDLen {
				return nil, fmt.Errorf("%s: want relay leg and call IDs of 1 to %d bytes", req.MessageTypeName, maxIDLen)
			}
		}
		return cs, nil
	case msgHangup:
		var hr hangupReq
		if err := json.Unmarshal(req.MessageData, &hr); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		if hr.ID == "" || len(hr.ID) > maxIDLen {
			return nil, fmt.Errorf("%s: want a call ID of 1 to %d bytes", req.MessageTypeName, maxIDLen)
		}
		return hr, nil
	case msgEvents:
		var er eventsReq
		if err := json.Unmarshal(req.MessageData, &er); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		if er.Session == "" || len(er.Session) > maxIDLen+5 || strings.ContainsAny(er.Session, "\r\n") ||
			er.Max < 1 || er.Max > maxEventBatch || er.WaitMS < 0 || er.WaitMS > maxEventWait {
			return nil, fmt.Errorf("%s: want a session, 1 to %d events and a wait of at most %d ms", req.MessageTypeName, maxEventBatch, maxEventWait)
		}
		return er, nil
	case msgWhereRoom:
		var wr whereRoomReq
		if err := json.Unmarshal(req.MessageData, &wr); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		if !validRoomName(wr.Room) {
			return nil, fmt.Errorf("%s: want a room name of 1 to %d bytes without URI delimiters", req.MessageTypeName, maxIDLen)
		}
		return wr, nil
	case msgMove:
		var mr moveReq
		if err := json.Unmarshal(req.MessageData, &mr); err != nil {
			return nil, fmt.Errorf("%s: %w", req.MessageTypeName, err)
		}
		oneDest := (mr.Room != "") != (mr.Call != "")
		if mr.LegID == "" || len(mr.LegID) > maxIDLen || !oneDest || (mr.Room != "" && !validRoomName(mr.Room)) ||
			len(mr.Call) > maxIDLen || strings.ContainsAny(mr.LegID+mr.Call, "\r\n") || len(mr.SIP) > maxIDLen || strings.ContainsAny(mr.SIP, "@;<> \r\n") {
			return nil, fmt.Errorf("%s: want a leg ID, one room name or call ID, and a SIP address within bounds", req.MessageTypeName)
		}
		return mr, nil
	}
	return nil, fmt.Errorf("unknown message type %.64q", req.MessageTypeName)
}

// handle answers a decoded request that needs no network I/O (a hang-up
// is answered here only for this node's own requests).
func (n *Node) handle(typ string, msg any) any {
	req := &pcluster.GrainRequest{MessageTypeName: typ}
	switch m := msg.(type) {
	case struct{}:
		return respond(req, callsResp{Node: n.opts.Node, Addr: n.self, Calls: n.srv.Calls(), Relays: n.relayRefs()})
	case rosterReq:
		return respond(req, rosterResp{Node: n.opts.Node, Users: n.srv.Presence().LocalRoster()})
	case contactsReq:
		resp := contactsResp{Node: n.opts.Node}
		if r := n.srv.Agent().Registrar(); r != nil {
			resp.Bindings = r.Lookup(m.User)
		}
		return respond(req, resp)
	case callsResp:
		return respond(req, n.storeRecord(m))
	case hangupReq:
		return n.hangupLocal(m.ID)
	case moveReq:
		return n.moveReply(m)
	case eventsReq:
		return respond(req, n.eventsLocal(m))
	}
	return &pcluster.GrainErrorResponse{Reason: "bad request", Message: fmt.Sprintf("%s: unexpected %T", typ, msg)}
}

// hangupLocal hangs up a call of this server; found is false without one.
func (n *Node) hangupLocal(id string) any {
	req := &pcluster.GrainRequest{MessageTypeName: msgHangup}
	c := n.srv.Call(id)
	if c == nil {
		return respond(req, hangupResp{})
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	if err := c.Hangup(ctx); err != nil {
		return &pcluster.GrainErrorResponse{Reason: "hangup", Message: err.Error()}
	}
	c.Logger().Info("cluster: call hung up at another node's request")
	return respond(req, hangupResp{Found: true})
}

// moveReply carries out a move and says how it went.
func (n *Node) moveReply(m moveReq) any {
	ctx, cancel := context.WithTimeout(n.ctx, 15*time.Second)
	defer cancel()
	if err := n.moveLocal(ctx, m); err != nil {
		if errors.Is(err, ErrCallNotFound) {
			return &pcluster.GrainErrorResponse{Reason: "not found", Message: err.Error()}
		}
		return &pcluster.GrainErrorResponse{Reason: "move", Message: err.Error()}
	}
	return respond(&pcluster.GrainRequest{MessageTypeName: msgMove}, struct{}{})
}

func respond(req *pcluster.GrainRequest, v any) *pcluster.GrainResponse {
	return &pcluster.GrainResponse{MessageTypeName: req.MessageTypeName, MessageData: marshal(v)}
}

// ask sends a request to the node actor at addr (this node's own is
// answered in place) and decodes the answer into out.
func (n *Node) ask(ctx context.Context, addr, typ string, body, out any) error {
	req := &pcluster.GrainRequest{MessageTypeName: typ, MessageData: marshal(body)}
	var res any
	if addr == n.self {
		msg, err := decodeRequest(req)
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", typ, err)
		}
		res = n.handle(typ, msg)
	} else {
		timeout := n.opts.RequestTimeout
		if typ == msgHangup || typ == msgMove || typ == msgEvents {
			timeout += 15 * time.Second // the far node waits on SIP
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
			timeout = time.Until(d)
		}
		if timeout <= 0 {
			return fmt.Errorf("cluster: %s to %s: %w", typ, addr, context.DeadlineExceeded)
		}
		// The answer is awaited in a goroutine of its own (it ends by the
		// timeout at the latest) so that ctx ends the wait: a long-poll
		// for events must not outlast its reader.
		fut := n.system.Root.RequestFuture(actor.NewPID(addr, actorName), req, timeout)
		type answer struct {
			res any
			err error
		}
		got := make(chan answer, 1)
		go func() {
			r, err := fut.Result()
			got <- answer{r, err}
		}()
		select {
		case a := <-got:
			if a.err != nil {
				return fmt.Errorf("cluster: %s to %s: %w", typ, addr, a.err)
			}
			res = a.res
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s to %s: %w", typ, addr, ctx.Err())
		}
	}
	switch r := res.(type) {
	case *pcluster.GrainResponse:
		if err := json.Unmarshal(r.MessageData, out); err != nil {
			return fmt.Errorf("cluster: %s from %s: %w", typ, addr, err)
		}
		return nil
	case *pcluster.GrainErrorResponse:
		return fmt.Errorf("cluster: %s at %s: %w", typ, addr, &errRemote{r.Reason, r.Message})
	}
	return fmt.Errorf("cluster: %s from %s: unexpected answer %T", typ, addr, res)
}
