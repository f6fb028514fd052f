package framework

import "github.com/switchboard-voice/switchboard/presence"

// PresenceStatus is a user's presence: offline, available, ringing,
// on-call or away. It marshals to JSON as that name.
type PresenceStatus = presence.Status

// Presence statuses.
const (
	PresenceOffline   = presence.Offline
	PresenceAvailable = presence.Available
	PresenceRinging   = presence.Ringing
	PresenceOnCall    = presence.OnCall
	PresenceAway      = presence.Away
)

// Presence is one user's roster entry (status, note, endpoints online).
type Presence = presence.Presence

// PresenceChange is one entry of the presence change feed
// (Config.OnPresence, Server.Presence().Subscribe).
type PresenceChange = presence.Change

// PresenceSubscribeOptions tune Server.Presence().Subscribe.
type PresenceSubscribeOptions = presence.SubscribeOptions

// Presence returns the server's presence store: every directory user's
// status, kept up to date by registrations and calls. Applications read
// it (Roster, Get), follow it (Subscribe), and let users choose a status
// and note (Set(user, PresenceAway, "at lunch")). In a cluster the other
// nodes' views and dialogs are merged into what it shows
// (presence.Store.SetRemoteEntries); LocalRoster and LocalEntries are this
// server's own.
func (s *Server) Presence() *presence.Store { return s.presence }
