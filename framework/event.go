package framework

import (
	"math"
	"time"
)

// Event types published on a call's event stream.
const (
	EventCallStarted  = "call.started"
	EventLegAnswered  = "leg.answered"
	EventLegEnded     = "leg.ended"
	EventLegBridged   = "leg.bridged"
	EventDTMF         = "dtmf"
	EventChat         = "chat"
	EventPlayStarted  = "playback.started"
	EventPlayFinished = "playback.finished"
	EventCallEnded    = "call.ended"
	// EventSpeaking and EventSilent mark where a leg starts and stops
	// speaking, while voice-activity detection runs (DetectSpeech).
	EventSpeaking = "speaking"
	EventSilent   = "silent"
)

// Event is one entry of a call's ordered event stream. Seq is gap-free per
// call, so a subscriber that reconnects can tell what it missed.
type Event struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	CallID string    `json:"call_id"`
	LegID  string    `json:"leg_id,omitempty"`
	Type   string    `json:"type"`
	Data   any       `json:"data,omitempty"`
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

// ChatData is the Data of an EventChat event: a text message from a leg.
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
