package framework

// Session event types of legs moving between calls and rooms, mute and
// hold.
const (
	EventLegJoined  = "leg.joined"
	EventLegLeft    = "leg.left"
	EventLegMoved   = "leg.moved"
	EventLegMuted   = "leg.muted"
	EventLegUnmuted = "leg.unmuted"
	EventLegHeld    = "leg.held"
	EventLegUnheld  = "leg.unheld"
)
