package sip

import (
	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/presence"
)

// presenceDialog is what a leg reports to the presence store: whose phone
// is on this dialog and how far it got. Legs of directory users only — an
// authenticated caller (the user's phone placed the call) or a registered
// user's contact that Dial forked to (the user's phone was called).
type presenceDialog struct {
	user     string
	dir      presence.Direction
	reported bool
	state    presence.DialogState
	// Tags and URIs as the user's phone sees them.
	localTag, remoteTag string
	local, remote       string
}

// trackPresence marks l as a dialog of user's phone.
func (l *Leg) trackPresence(user string, dir presence.Direction, local, remote string, localTag, remoteTag string) {
	if l.agent.cfg.Presence == nil || user == "" {
		return
	}
	l.mu.Lock()
	l.pres = &presenceDialog{user: user, dir: dir, local: local, remote: remote, localTag: localTag, remoteTag: remoteTag}
	l.mu.Unlock()
}

// setPresenceTags fills in the user's phone's tag once it is known (the
// To tag of its response, for a call we placed to it).
func (l *Leg) setPresenceTags(localTag string) {
	l.mu.Lock()
	if l.pres != nil && localTag != "" {
		l.pres.localTag = localTag
	}
	l.mu.Unlock()
}

// reportDialog publishes the leg's dialog state to the presence store.
// States only move forward; terminated is reported once, and only for a
// dialog that was reported before.
func (l *Leg) reportDialog(st presence.DialogState) {
	l.mu.Lock()
	p := l.pres
	if p == nil || (p.reported && st <= p.state) || (!p.reported && st == presence.DialogTerminated) {
		l.mu.Unlock()
		return
	}
	p.reported, p.state = true, st
	d := presence.Dialog{ID: l.callID, CallID: l.callID, LocalTag: p.localTag, RemoteTag: p.remoteTag,
		Direction: p.dir, State: st, Local: p.local, Remote: p.remote}
	user := p.user
	l.mu.Unlock()
	l.agent.cfg.Presence.UpdateDialog(user, d)
}

// tagOf returns the tag parameter of a From or To header's params.
func tagOf(params sip.HeaderParams) string {
	if params == nil {
		return ""
	}
	t, _ := params.Get("tag")
	return t
}

// responseToTag returns the To tag of a response ("" without one, or
// without a To header at all).
func responseToTag(res *sip.Response) string {
	if res == nil || res.To() == nil {
		return ""
	}
	return tagOf(res.To().Params)
}
