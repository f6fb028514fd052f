package framework

import (
	"encoding/json"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Every message a call actor or a room actor accepts is defined here, and
// every one is plain data: strings, numbers, bools, durations, slices,
// maps and structs of those, and *actor.PID — nothing live (no channel,
// func, Signaling, Endpoint, Source or Sink), so the same messages can
// cross nodes as protoactor cluster messages. Live objects stay in
// node-local tables: a leg's signaling and media in the leg registry
// (legs.go) under the leg's ID, a Source, Sink or transfer in the server's
// objects table (replies.go) under a handle ID. Answers go to the
// request's ReplyAddr as a Reply. TestActorMessagesArePlainData checks
// the list below by reflection and JSON, and that every type the actors'
// Receive switches on is in it.

// Requests from Go code (Call verbs, Leg verbs, Move, rooms) to a call
// actor.
type (
	answerReq struct{ ReplyAddr }
	ringReq   struct{ ReplyAddr }
	rejectReq struct {
		Code int
		ReplyAddr
	}
	hangupReq struct{ ReplyAddr }
	// playReq plays the Source under SourceID to the caller; the reply
	// comes when it ends. Its ReqID names the playback.
	playReq struct {
		SourceID string
		ReplyAddr
	}
	stopPlayReq struct{ PlayID uint64 }
	// listenReq sets the sink under SinkID ("" for none) on the caller.
	listenReq struct {
		SinkID string
		ReplyAddr
	}
	// tapReq adds (SinkID set) or removes (SinkID "") the tap under Key,
	// on what the caller says or, with Heard, on what the caller hears.
	tapReq struct {
		Key    string
		SinkID string
		Heard  bool
		ReplyAddr
	}
	// callerReq asks for the caller's leg ID (Reply.LegID; "" once it
	// has gone): its endpoint is then found in the node-local registry.
	callerReq struct{ ReplyAddr }
	echoReq   struct {
		On bool
		ReplyAddr
	}
	holdReq struct {
		On bool
		ReplyAddr
	}
	dialReq struct {
		Target string
		Opts   DialOptions
		ReplyAddr
	}
	dialCancel  struct{ DialID uint64 }
	transferReq struct {
		Target string
		ReplyAddr
	}
	joinReq struct {
		Room string
		Opts JoinOptions
		ReplyAddr
	}
	// leaveReq takes the call out of the room the Join with JoinID put
	// it in.
	leaveReq struct {
		JoinID uint64
		ReplyAddr
	}
	// publishReq publishes an event made outside the call actor (the
	// presence hook, Call.Signal), in the stream's order.
	publishReq struct {
		LegID    string
		Type     EventType
		Signal   *SignalData   `json:",omitempty"`
		Presence *PresenceData `json:",omitempty"`
		ReplyAddr
	}
	// chatReq is Call.SendMessage: chat from the application to every leg
	// that carries it.
	chatReq struct {
		Text string
		ReplyAddr
	}
	legsReq        struct{ ReplyAddr }
	controllerDone struct {
		Err      string
		Panicked bool
	}
	shutdownReq struct{}
)

// Requests that reach whichever actor holds a leg (a call or a room).
type (
	// legCtl is a per-leg verb (Leg.Hangup, Mute, Hold, Tap; Kick).
	legCtl struct {
		LegID  string
		Op     legOp
		SinkID string // opTaps: the sink's handle ("" removes it)
		ReplyAddr
	}
	// moveOut asks the leg's holder to let it go to Dst.
	moveOut struct {
		LegID string
		Dst   *actor.PID
		To    string // the destination, as Destination.String
		Opts  JoinOptions
		ReplyAddr
	}
	// moveIn hands a live, answered leg — by ID; it is in this node's leg
	// registry with its signaling, media and tap — to its new holder.
	moveIn struct {
		LegID   string
		From    string
		FromSeq uint64 // the Seq of the leg.moved event in From's stream
		Opts    JoinOptions
		Muted   bool
		ReplyAddr
	}
	// legReplace asks a leg's holder to put leg LegID in Old's place.
	legReplace struct {
		Old   string
		LegID string
		From  string
		ReplyAddr
	}
)

// Reports from a leg's actor (or its signaling) to the leg's holder.
type (
	legAnswered struct {
		LegID string
		At    time.Time // when the leg was answered (the ACK); zero: when this arrives
	}
	legEnded struct {
		LegID string
		Cause string // "" when the leg ended without an error
	}
	legDTMF struct {
		LegID  string
		Digit  string
		Source string
	}
	legChat struct {
		LegID, ContentType, Text string
	}
	// legSignal: a leg sent a signal (SIP INFO application/json).
	legSignal struct {
		LegID   string
		Name    string
		Payload json.RawMessage `json:",omitempty"`
	}
	// legPanic: user code on a leg's media path (its Source, Sink or DTMF
	// callback) panicked.
	legPanic struct {
		LegID string
		Panic PanicData
	}
	// legMediaUpdate tells the holder a leg's codec, address or direction
	// changed.
	legMediaUpdate struct {
		LegID     string
		Codec     string
		Direction string
	}
	// legTransfer: a leg received REFER; the reply accepts (nil) or
	// declines it. The live transfer is under TransferID.
	legTransfer struct {
		LegID       string
		TransferID  string
		Target      string
		ReferredBy  string
		Attended    bool   // Refer-To carries Replaces
		ReplacesLeg string // our leg the Replaces names, if any
		ReplyAddr
	}
)

// Results of work a call actor started outside its mailbox.
type (
	// playDone: the playback PlayID ended; its answer goes to ReplyAddr.
	playDone struct {
		PlayID uint64
		Err    *ErrorData `json:",omitempty"`
		Panic  *PanicData `json:",omitempty"`
		ReplyAddr
	}
	// ringDone is the outcome of Ring's 180.
	ringDone struct {
		LegID string
		Err   *ErrorData `json:",omitempty"`
		ReplyAddr
	}
	// holdDone is the outcome of a Hold or Unhold re-INVITE.
	holdDone struct {
		LegID string
		On    bool
		Err   *ErrorData `json:",omitempty"`
		ReplyAddr
	}
	// dialResult: the Dial with DialID answered (its leg, by ID, is in
	// the leg registry) or failed.
	dialResult struct {
		DialID         uint64
		LegID          string
		CallerAnswered bool
		Err            *ErrorData `json:",omitempty"`
	}
	transferResult struct {
		From       string // the transferring leg
		Stays      string // the transferee, bridged to the target
		ByCaller   bool   // the caller transferred the dialled party
		TransferID string
		Target     string
		LegID      string     // the target's leg, when it answered
		Err        *ErrorData `json:",omitempty"`
	}
	// speechChange carries a VAD change of the DetectSpeech whose tap is
	// Key from the media path to the actor.
	speechChange struct {
		Key      string
		Speaking bool
		Duration time.Duration
	}
)

// Messages between a call and a room.
type (
	// roomAttach asks a room to mix a leg its call keeps (Join). HeardID
	// is the call's heard-audio switch in the objects table.
	roomAttach struct {
		LegID   string
		Opts    JoinOptions
		Holder  *actor.PID
		HeardID string
	}
	// roomAttached is the room's answer to roomAttach.
	roomAttached struct {
		Room  string
		Count int
		Err   *ErrorData `json:",omitempty"`
	}
	// roomDetach takes a joined leg out of the room's mix.
	roomDetach struct{ LegID string }
	// roomLeft tells a call the room let its leg go (kick, room end).
	roomLeft struct {
		Room string
		Err  *ErrorData `json:",omitempty"`
	}
	roomIdle    struct{}
	roomOptsMsg struct{ Opts RoomOptions }
	roomInfoReq struct{ ReplyAddr }
)

// PanicData describes a panic in user code on the media path.
type PanicData struct {
	Where string
	Value string
	Stack string
}

// actorMessages lists every message type call and room actors accept
// (Reply: a call actor collects its legs' answers to chat; it is also all
// the reply inbox takes), and those of leg actors (leg.go), which are
// plain data as well.
var actorMessages = []any{
	&legAnswer{}, &legReject{}, &legHangup{}, &legOpResult{}, &legWatch{}, &legSendChat{}, &legMarkAnswered{},
	&answerReq{}, &ringReq{}, &rejectReq{}, &hangupReq{}, &playReq{}, &stopPlayReq{}, &listenReq{},
	&tapReq{}, &callerReq{}, &echoReq{}, &holdReq{}, &dialReq{}, &dialCancel{}, &transferReq{},
	&joinReq{}, &leaveReq{}, &publishReq{}, &chatReq{}, &legsReq{}, &controllerDone{}, &shutdownReq{},
	&legCtl{}, &moveOut{}, &moveIn{}, &legReplace{},
	&legAnswered{}, &legEnded{}, &legDTMF{}, &legChat{}, &legSignal{}, &legPanic{}, &legMediaUpdate{}, &legTransfer{},
	&playDone{}, &ringDone{}, &holdDone{}, &dialResult{}, &transferResult{}, &speechChange{},
	&roomAttach{}, &roomAttached{}, &roomDetach{}, &roomLeft{}, &roomIdle{}, &roomOptsMsg{}, &roomInfoReq{},
	&Reply{},
}
