package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Routes adds the cluster's HTTP API to the server's port:
//
//	GET    /api/calls       every node's calls: [{"node", "id", "user", "from", "to", "start", ...}]
//	DELETE /api/calls/{id}  hang up a call on whichever node has it (204; 404 if none)
//	POST   /api/calls/{id}/move?room=NAME[&node=NODE] | ?call=ID
//	                        move a leg (or a call's caller) into the cluster's room NAME (on NODE
//	                        when given), or into call ID, on whichever nodes they are
//	GET    /api/presence    every user's presence, merged over the nodes
//	GET    /api/rooms/{name} the node hosting the cluster's room name (placing it if new)
//	GET    /api/sessions/{id}/events?from=SEQ
//	                        a call's (id) or room's (id "room:NAME") events as Server-Sent Events,
//	                        from whichever node holds it: "id:" is the owner's Seq, so
//	                        Last-Event-ID (or from=) resumes on any node
//	GET    /api/presence/{user} one user's presence merged over the nodes (from the pushed rosters)
//	GET    /api/presence/events every user's presence merged over the nodes as Server-Sent
//	                        Events: each known user's first, then every change
//	GET    /api/cluster     this node and the members it sees
func (n *Node) Routes() {
	n.srv.HandleFunc("GET /api/presence", n.servePresence)
	n.srv.HandleFunc("GET /api/presence/events", n.servePresenceEvents)
	n.srv.HandleFunc("GET /api/presence/{user}", n.serveUserPresence)
	n.srv.HandleFunc("GET /api/calls", n.serveCalls)
	n.srv.HandleFunc("POST /api/calls/{id}/move", n.serveMove)
	n.srv.HandleFunc("DELETE /api/calls/{id}", n.serveHangup)
	n.srv.HandleFunc("GET /api/cluster", n.serveMembers)
	n.srv.HandleFunc("GET /api/rooms/{name}", n.serveRoom)
	n.srv.HandleFunc("GET /api/sessions/{id}/events", n.serveEvents)
}

func (n *Node) serveCalls(w http.ResponseWriter, r *http.Request) {
	calls, err := n.Calls(r.Context())
	if calls == nil {
		calls = []NodeCall{}
	}
	resp := struct {
		Calls []NodeCall `json:"calls"`
		Error string     `json:"error,omitempty"` // nodes that did not answer
	}{Calls: calls}
	if err != nil {
		resp.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (n *Node) serveHangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "\r\n") {
		http.Error(w, "bad call id", http.StatusBadRequest)
		return
	}
	err := n.Hangup(r.Context(), id)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrCallNotFound):
		http.Error(w, "no such call", http.StatusNotFound)
	default:
		n.log.Warn("cluster: hang up by HTTP failed", "call_id", id, "error", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
}

func (n *Node) serveMove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id, room, call, node := r.PathValue("id"), q.Get("room"), q.Get("call"), q.Get("node")
	if id == "" || len(id) > maxIDLen || (room == "") == (call == "") || len(room) > maxIDLen || len(call) > maxIDLen ||
		len(node) > maxIDLen || (call != "" && node != "") {
		http.Error(w, "want a leg or call id and ?room=NAME (and &node=NODE) or ?call=ID", http.StatusBadRequest)
		return
	}
	var err error
	if call != "" {
		err = n.Move(r.Context(), id, Destination{Call: call})
	} else {
		err = n.MoveToRoom(r.Context(), id, room, node)
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrCallNotFound):
		http.Error(w, "no such leg or call", http.StatusNotFound)
	default:
		n.log.Warn("cluster: move by HTTP failed", "call_id", id, "room", room, "call", call, "node", node, "error", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
}

func (n *Node) serveMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Cluster string   `json:"cluster"`
		Node    string   `json:"node"`
		Members []Member `json:"members"`
	}{n.opts.Name, n.opts.Node, n.membersWithRooms()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (n *Node) serveRoom(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("name")
	if !validRoomName(room) {
		http.Error(w, "bad room name", http.StatusBadRequest)
		return
	}
	host, err := n.RoomHost(r.Context(), room)
	if err != nil {
		n.log.Warn("cluster: room lookup by HTTP failed", "room", room, "error", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Room string `json:"room"`
		Member
	}{room, host})
}

func (n *Node) serveEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	from := r.URL.Query().Get("from")
	if h := r.Header.Get("Last-Event-ID"); h != "" {
		from = h
	}
	var seq uint64
	if from != "" {
		v, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			http.Error(w, "from / Last-Event-ID: want a Seq", http.StatusBadRequest)
			return
		}
		seq = v
	}
	if id == "" || len(id) > maxIDLen+5 || strings.ContainsAny(id, "\r\n") {
		http.Error(w, "bad session id", http.StatusBadRequest)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx := r.Context()
	owner, err := n.sessionOwner(ctx, id)
	switch {
	case errors.Is(err, ErrCallNotFound):
		http.Error(w, "no such call or room", http.StatusNotFound)
		return
	case err != nil:
		n.log.Warn("cluster: events by HTTP failed", "session", id, "error", err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	feed := n.Events(id, seq)
	feed.owner = owner
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for {
		ev, err := feed.Next(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				n.log.Warn("cluster: event stream by HTTP ended", "session", id, "seq", feed.Seq(), "error", err)
			}
			return
		}
		b, _ := json.Marshal(ev)
		if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", feed.Seq(), ev.Type.String(), b); err != nil {
			return
		}
		flusher.Flush()
	}
}

// membersWithRooms is Members with this node's own live rooms filled in.
func (n *Node) membersWithRooms() []Member {
	ms := n.Members()
	for i := range ms {
		if ms[i].Self {
			ms[i].Rooms = n.srv.Rooms()
		}
	}
	return ms
}
