package framework

import (
	"context"
	"errors"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// EventConferenceJoined and EventConferenceLeft mark a call entering and
// leaving a conference room (Data: ConferenceData).
const (
	EventConferenceJoined = "conference.joined"
	EventConferenceLeft   = "conference.left"
)

// ConferenceData is the Data of conference events.
type ConferenceData struct {
	Room         string `json:"room"`
	Participants int    `json:"participants"`
}

// JoinOptions configure Join.
type JoinOptions struct {
	// Muted joins as a listener: heard by nobody until unmuted.
	Muted bool
}

// Join puts the caller into the conference room (created on first use,
// closed when the last participant leaves), where everyone hears everyone
// else through one mixer on its own 20 ms clock. It returns when the
// caller hangs up (ErrHangup) or ctx ends (the caller is then taken out
// of the room and the flow goes on: drop-out).
func (c *Call) Join(ctx context.Context, room string, opts JoinOptions) error {
	if err := c.Answer(ctx); err != nil {
		return err
	}
	j := &joinReq{room: room, opts: opts, reply: make(chan error, 1)}
	err := c.request(ctx, "join "+room, j, j.reply)
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil {
		done := make(chan error, 1)
		c.root.Send(c.pid, &leaveReq{join: j, reply: done})
		select {
		case <-done:
		case <-c.ctx.Done():
		}
	}
	return err
}

type (
	joinReq struct {
		room  string
		opts  JoinOptions
		reply chan error
	}
	leaveReq struct {
		join  *joinReq
		reply chan error
	}
)

// membership is the call's place in a conference.
type membership struct {
	req  *joinReq
	conf *conference
	part *media.Participant
	stop func()
}

// conference is one room: a mixer and its member count. The server keeps
// the rooms; joins and leaves are rare, so a mutex guards them.
type conference struct {
	room    string
	mixer   *media.Mixer
	members int
}

type conferences struct {
	mu    sync.Mutex
	rooms map[string]*conference
}

func (cs *conferences) acquire(room string) *conference {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.rooms == nil {
		cs.rooms = map[string]*conference{}
	}
	c := cs.rooms[room]
	if c == nil {
		c = &conference{room: room, mixer: media.NewMixer(8000)}
		cs.rooms[room] = c
	}
	c.members++
	return c
}

func (cs *conferences) release(c *conference) (left int) {
	cs.mu.Lock()
	c.members--
	left = c.members
	if left == 0 {
		delete(cs.rooms, c.room)
	}
	cs.mu.Unlock()
	if left == 0 {
		c.mixer.Close()
	}
	return left
}

// closeAll stops every room's mixer (server shutdown).
func (cs *conferences) closeAll() {
	cs.mu.Lock()
	rooms := cs.rooms
	cs.rooms = nil
	cs.mu.Unlock()
	for _, c := range rooms {
		c.mixer.Close()
	}
}

func (a *callActor) join(ctx actor.Context, j *joinReq) {
	if a.ended || len(a.order) == 0 || a.legs[a.order[0]].ended {
		j.reply <- ErrHangup
		return
	}
	if a.dial != nil || a.conf != nil {
		j.reply <- errors.New("the caller is already bridged or in a conference")
		return
	}
	caller := a.legs[a.order[0]]
	conf := a.srv.confs.acquire(j.room)
	part := conf.mixer.Add()
	part.SetMuted(j.opts.Muted)
	ep := caller.sig.Endpoint()
	stop := ep.Play(&heardSource{src: part, sw: &a.heard}, nil) // the mix, to the heard taps too
	a.conf = &membership{req: j, conf: conf, part: part, stop: stop}
	a.applyCallerSink() // the participant, plus taps such as DetectSpeech
	a.publish(caller.sig.ID(), EventConferenceJoined, ConferenceData{Room: j.room, Participants: conf.mixer.Len()})
	a.log.Info("joined conference", "room", j.room, "participants", conf.mixer.Len())
}

// leave takes the call out of its conference; err goes to the waiting Join.
func (a *callActor) leave(err error) {
	m := a.conf
	if m == nil {
		return
	}
	a.conf = nil
	m.conf.mixer.Remove(m.part)
	m.stop()
	a.applyCallerSink() // back to Listen's sink and the taps
	left := a.srv.confs.release(m.conf)
	a.publish("", EventConferenceLeft, ConferenceData{Room: m.req.room, Participants: left})
	m.req.reply <- err
}
