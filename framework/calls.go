package framework

import (
	"sort"
	"time"
)

// CallInfo describes one live call, as Server.Calls lists it. It is plain
// data: safe to copy, marshal and send to another node.
type CallInfo struct {
	ID     string    `json:"id"`
	User   string    `json:"user"` // the called user (request-URI user)
	From   string    `json:"from"`
	To     string    `json:"to"`
	Trunk  string    `json:"trunk,omitempty"`
	Caller string    `json:"caller,omitempty"` // the caller's number
	Start  time.Time `json:"start"`
}

// info is the call's CallInfo.
func (c *Call) info() CallInfo {
	return CallInfo{ID: c.id, User: c.user, From: c.from, To: c.to, Trunk: c.trunk, Caller: c.caller.Number, Start: c.start}
}

// Calls lists the calls up on this server, oldest first. It costs one
// lock and a copy per call; it does not ask the call actors.
func (s *Server) Calls() []CallInfo {
	s.mu.Lock()
	out := make([]CallInfo, 0, len(s.byID))
	for _, c := range s.byID {
		out = append(out, c.info())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Start.Equal(out[j].Start) {
			return out[i].Start.Before(out[j].Start)
		}
		return out[i].ID < out[j].ID
	})
	return out
}
