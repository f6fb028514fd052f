package framework

import (
	"encoding/json"
	"math"
	"time"
)

// EventType names the kind of an Event. It marshals to JSON as its dotted
// name ("leg.answered"), which is also what String returns.
type EventType string

// String returns the dotted name.
func (t EventType) String() string { return string(t) }

// Event types published on a session's event stream (a call's; rooms use
// the same log). Data is nil unless noted.
const (
	EventCallStarted  EventType = "call.started"
	EventLegRinging   EventType = "leg.ringing"
	EventLegAnswered  EventType = "leg.answered"
	EventLegEnded     EventType = "leg.ended" // Data: EndData; the leg hung up
	EventLegBridged   EventType = "leg.bridged"
	EventLegJoined    EventType = "leg.joined"
	EventLegLeft      EventType = "leg.left"
	EventLegMoved     EventType = "leg.moved"
	EventLegHeld      EventType = "leg.held"   // Data: HoldData
	EventLegUnheld    EventType = "leg.unheld" // Data: HoldData
	EventLegMuted     EventType = "leg.muted"
	EventLegUnmuted   EventType = "leg.unmuted"
	EventDTMF         EventType = "dtmf"     // Data: DTMFData
	EventChat         EventType = "chat"     // Data: ChatData
	EventPresence     EventType = "presence" // Data: PresenceData
	EventSignal       EventType = "signal"   // Data: SignalData
	EventPlayStarted  EventType = "playback.started"
	EventPlayFinished EventType = "playback.finished"
	EventCallEnded    EventType = "call.ended" // Data: EndData
	// EventSpeaking and EventSilent mark where a leg starts and stops
	// speaking, while voice-activity detection runs (DetectSpeech).
	EventSpeaking EventType = "speaking"
	EventSilent   EventType = "silent" // Data: SpeechData
	// EventOverflow is not part of any stream: a Subscription returns it
	// in place of events it can no longer deliver because they left the
	// stream's replay ring before it read them (Data: OverflowData). Its
	// Seq is 0.
	EventOverflow EventType = "overflow"
)

// Event is one entry of a session's ordered event stream. Seq is gap-free
// per session (call or room), from 1, so a subscriber that reconnects can
// resume with Subscribe(ctx, lastSeq) and tell what it missed. Every
// subscriber gets the same Data value: treat it as read-only.
type Event struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// ServerSeq is the event's position in the server-wide stream
	// (Server.Subscribe); 0 on a session's own stream.
	ServerSeq uint64    `json:"server_seq,omitempty"`
	CallID    string    `json:"call_id"`
	LegID     string    `json:"leg_id,omitempty"`
	Type      EventType `json:"type"`
	Data      any       `json:"data,omitempty"`
}

// OverflowData is the Data of an EventOverflow marker: the events From
// to To (inclusive, in the numbering of the stream subscribed to: Seq for
// a session, ServerSeq for the server) were lost to this subscriber. The
// next event it receives is To+1.
type OverflowData struct {
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
}

// HoldData is the Data of EventLegHeld and EventLegUnheld: Remote is
// true when the leg's far end started it (e.g. a phone's hold button),
// false for Call.Hold / Call.Unhold.
type HoldData struct {
	Remote bool `json:"remote"`
}

// PresenceData is the Data of an EventPresence event: a user's
// availability changed.
type PresenceData struct {
	User   string `json:"user"`
	Status string `json:"status"` // e.g. "online", "busy", "away", "offline"
	Note   string `json:"note,omitempty"`
}

// SignalData is the Data of an EventSignal event: an application-defined
// signal with a JSON payload, from Go code (Call.Signal) or from a leg (a
// SIP INFO with Content-Type application/json).
type SignalData struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// DTMFData is the Data of an EventDTMF event.
type DTMFData struct {
	Digit  string `json:"digit"`
	Source string `json:"source"` // rfc4733, inband, info
}

// SpeechData is the Data of an EventSilent event.
type SpeechData struct {
	// Duration is how long the leg spoke.
	Duration time.Duration `json:"duration"`
}

// ChatData is the Data of an EventChat event: a text message from a leg
// (Event.LegID) or, with an empty LegID, from the application.
type ChatData struct {
	ContentType string `json:"content_type"`
	Text        string `json:"text"`
}

// EndData is the Data of EventLegEnded and EventCallEnded events.
type EndData struct {
	Cause string `json:"cause"`
}

// CDR is the call detail record written when a call ends.
type CDR struct {
	CallID   string        `json:"call_id"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	User     string        `json:"user"`
	Start    time.Time     `json:"start"`
	Answer   time.Time     `json:"answer,omitzero"`
	End      time.Time     `json:"end"`
	Duration time.Duration `json:"duration"` // billable: from answer to end
	Cause    string        `json:"cause"`
	// Media is what the caller's RTP stream saw (RFC 3550 counters).
	Media MediaStats `json:"media"`
}

// MediaStats summarises one leg's RTP in a CDR.
type MediaStats struct {
	PacketsIn  uint64        `json:"packets_in"`
	PacketsOut uint64        `json:"packets_out"`
	Lost       uint64        `json:"lost"`
	Jitter     time.Duration `json:"jitter"`

	// From RTCP (media/rtcp.go); zero when the peer sent none.
	// RTT is the round trip from the peer's reports (RTTSamples of them
	// matched one of our SRs; on loopback RTT may round to 0), RemoteLost and
	// RemoteJitter what the peer reported receiving from us, MOS and
	// RemoteMOS E-model estimates for what we and the peer heard.
	RTT          time.Duration `json:"rtt,omitzero"`
	RTTSamples   uint64        `json:"rtt_samples,omitzero"`
	RemoteLost   uint64        `json:"remote_lost,omitzero"`
	RemoteJitter time.Duration `json:"remote_jitter,omitzero"`
	MOS          float64       `json:"mos,omitzero"`
	RemoteMOS    float64       `json:"remote_mos,omitzero"`
}

// round2 keeps two decimals of a MOS for the CDR.
func round2(x float64) float64 { return math.Round(x*100) / 100 }
