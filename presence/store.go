package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"
)

// Presence is one user's entry in the roster.
type Presence struct {
	User   string `json:"user"`
	Status Status `json:"status"`
	Note   string `json:"note,omitempty"`
	// Online counts the user's online endpoints (registered SIP contacts
	// plus any other source).
	Online int `json:"online"`
	// Since is when Status last changed.
	Since time.Time `json:"since"`
}

// Dialog is one of a user's calls as their phone sees it (RFC 4235): the
// dialog package's NOTIFY bodies and busy-lamp fields are built from it.
type Dialog struct {
	// ID names the dialog among the user's dialogs (the SIP Call-ID of the
	// leg that reaches the user's phone).
	ID        string      `json:"id"`
	CallID    string      `json:"call_id"`
	LocalTag  string      `json:"local_tag,omitempty"`  // the user's phone's tag
	RemoteTag string      `json:"remote_tag,omitempty"` // the other side's tag
	Direction Direction   `json:"direction"`
	State     DialogState `json:"state"`
	// Local and Remote are the URIs of the user's side and the other party.
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
}

// Entry is one user's presence as one store sees it from its own
// sources, with the user's dialogs there: what a cluster node tells the
// others (LocalEntries) and what it is told (SetRemoteEntries). It is
// plain data.
type Entry struct {
	Presence
	// Dialogs are the user's dialogs that have not terminated, in ID
	// order.
	Dialogs []Dialog `json:"dialogs,omitempty"`
}

// Change is one entry of the store's change feed: a user's presence after
// the change, what it was before, and the dialog whose state changed (nil
// when the user's status or note changed for another reason).
type Change struct {
	Seq      uint64    `json:"seq"` // gap-free per store
	Time     time.Time `json:"time"`
	Presence Presence  `json:"presence"`
	Previous Status    `json:"previous"`
	Dialog   *Dialog   `json:"dialog,omitempty"`
	// Dialogs lists the user's dialogs that are still up after a dialog
	// change (nil when Dialog is nil).
	Dialogs []Dialog `json:"dialogs,omitempty"`
}

// ErrOverflow is the error of a Subscription whose reader fell so far
// behind that its buffer filled: its channel is closed and the reader
// should read Roster again and subscribe anew.
var ErrOverflow = errors.New("presence: subscriber too slow, changes dropped")

// Options configure a Store. The zero value is usable.
type Options struct {
	// OnChange, if set, receives every change in order, synchronously on
	// the goroutine that caused it (a REGISTER, a call's signaling). It
	// must not block and must not call the Store's setters (Set,
	// SetOnline, UpdateDialog); reading (Get, Roster) is fine.
	OnChange func(Change)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger reports a panicking OnChange (recovered); nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store holds the presence of every user it has heard of. Its methods are
// safe for concurrent use and never block on a subscriber.
type Store struct {
	onChange func(Change)
	now      func() time.Time
	log      *slog.Logger

	mu    sync.Mutex
	users map[string]*entry
	seq   uint64
	subs  map[*Subscription]struct{}

	emitMu sync.Mutex // held while OnChange runs, so changes reach it in order
}

type entry struct {
	chosen  Status // Available, Away or Offline ("appear offline")
	note    string
	online  map[string]int // source ("sip", "web") → endpoints online
	dialogs map[string]Dialog
	status  Status // derived from this store's own sources only
	since   time.Time
	// remote holds the user's presence as other stores (cluster nodes)
	// see it from their own sources, by their name (SetRemote). It is
	// merged into what Get, Roster and the change feed show, never into
	// LocalRoster.
	remote map[string]Presence
	// remoteDialogs holds the user's dialogs other stores carry, by their
	// name, in ID order (SetRemoteEntries): listed with the user's own
	// dialogs (Snapshot, Change.Dialogs), never in LocalEntries, and
	// never deciding this store's own status (the remote Presence does).
	remoteDialogs map[string][]Dialog
	// shown is the merged presence last published.
	shown Presence
	// remoteOnly marks a user first heard of through SetRemote, until one
	// of this store's own sources speaks of them.
	remoteOnly bool
}

// New returns an empty store.
func New(opts Options) *Store {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Store{onChange: opts.OnChange, now: now, log: log, users: map[string]*entry{}, subs: map[*Subscription]struct{}{}}
}

// Add makes users known (offline until something says otherwise), so the
// roster lists them before they first register. It publishes nothing.
func (s *Store) Add(users ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		s.entryLocked(u).remoteOnly = false
	}
}

func (s *Store) entryLocked(user string) *entry {
	e := s.users[user]
	if e == nil {
		e = &entry{chosen: Available, online: map[string]int{}, dialogs: map[string]Dialog{}, since: s.now()}
		e.shown = e.presence(user)
		s.users[user] = e
	}
	return e
}

// Set records what the user chose: Available, Away, or Offline (appear
// offline), and a free-text note. Ringing and on-call come from calls and
// cannot be set. The user shows the chosen status whenever they are online
// and not on a call.
func (s *Store) Set(user string, status Status, note string) error {
	switch status {
	case Available, Away, Offline:
	default:
		return fmt.Errorf("presence: set %s to %s: only available, away or offline can be chosen", user, status)
	}
	if user == "" {
		return errors.New("presence: set: empty user")
	}
	s.update(user, nil, func(e *entry) {
		e.remoteOnly = false
		e.chosen, e.note = status, note
	})
	return nil
}

// SetOnline says how many endpoints of user are online from source ("sip"
// for registered contacts). A user with none from any source is offline.
func (s *Store) SetOnline(user, source string, n int) {
	s.update(user, nil, func(e *entry) {
		e.remoteOnly = false
		if n <= 0 {
			delete(e.online, source)
		} else {
			e.online[source] = n
		}
	})
}

// UpdateDialog records the state of one of user's dialogs; a terminated
// dialog is forgotten after its change is published. Every call publishes
// a Change carrying the dialog.
func (s *Store) UpdateDialog(user string, d Dialog) {
	s.update(user, &d, func(e *entry) {
		e.remoteOnly = false
		if d.State == DialogTerminated {
			delete(e.dialogs, d.ID)
		} else {
			e.dialogs[d.ID] = d
		}
	})
}

// update applies fn to user's entry and publishes a change when the
// status, the note or the online count changed, or a dialog was given.
func (s *Store) update(user string, d *Dialog, fn func(*entry)) {
	s.mu.Lock()
	e := s.entryLocked(user)
	before, beforeNote, beforeOnline := e.status, e.note, e.onlineCount()
	shownBefore := e.shown
	fn(e)
	e.status = e.derive()
	now := s.now()
	if e.status != before {
		e.since = now
	}
	e.reshow(user, now)
	localSame := e.status == before && e.note == beforeNote && e.onlineCount() == beforeOnline
	shownSame := e.shown.Status == shownBefore.Status && e.shown.Note == shownBefore.Note && e.shown.Online == shownBefore.Online
	if d == nil && localSame && shownSame {
		s.mu.Unlock()
		return
	}
	s.seq++
	ch := Change{Seq: s.seq, Time: now, Presence: e.shown, Previous: shownBefore.Status}
	if d != nil {
		dc := *d
		ch.Dialog = &dc
		ch.Dialogs = e.dialogList()
	}
	for sub := range s.subs {
		select {
		case sub.c <- ch:
		default:
			s.dropLocked(sub, ErrOverflow)
		}
	}
	if s.onChange == nil {
		s.mu.Unlock()
		return
	}
	s.emitMu.Lock() // taken before mu is released: the hook sees changes in Seq order
	s.mu.Unlock()
	defer s.emitMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("presence: OnChange panicked", "panic", fmt.Sprint(r), "user", user, "seq", ch.Seq, "stack", string(debug.Stack()))
		}
	}()
	s.onChange(ch)
}

// rank orders statuses for merging one user's presence from several
// sources: a call anywhere beats ringing, which beats away, available
// and offline.
func rank(st Status) int {
	switch st {
	case Available:
		return 1
	case Away:
		return 2
	case Ringing:
		return 3
	case OnCall:
		return 4
	}
	return 0
}

// Merge merges b, another source's presence of the same user, into a
// (zero for the first): the most engaged status wins with its note and
// time; online endpoints add up.
func Merge(a, b Presence) Presence {
	if a.User == "" {
		return b
	}
	online := a.Online + b.Online
	if rank(b.Status) > rank(a.Status) {
		a = b
	}
	a.Online = online
	return a
}

// reshow recomputes the merged presence of e (own sources and remote
// views); the merged Since moves only when the merged status changes.
func (e *entry) reshow(user string, now time.Time) {
	p := e.presence(user)
	names := make([]string, 0, len(e.remote))
	for n := range e.remote {
		names = append(names, n)
	}
	sort.Strings(names) // ties are broken the same way every time
	for _, n := range names {
		r := e.remote[n]
		r.User = user
		p = Merge(p, r)
	}
	if p.Status == e.shown.Status {
		p.Since = e.shown.Since
	} else {
		p.Since = now
	}
	e.shown = p
}

func (e *entry) onlineCount() int {
	n := 0
	for _, c := range e.online {
		n += c
	}
	return n
}

// derive computes the status others see: a confirmed dialog or a call
// being placed is on-call, a ringing phone is ringing, otherwise the
// chosen status while online, offline when nothing is online.
func (e *entry) derive() Status {
	ringing, busy := false, false
	for _, d := range e.dialogs {
		switch {
		case d.State == DialogConfirmed:
			busy = true
		case d.Direction == Recipient:
			ringing = true
		default:
			busy = true // placing a call
		}
	}
	switch {
	case busy:
		return OnCall
	case ringing:
		return Ringing
	case e.onlineCount() == 0:
		return Offline
	}
	return e.chosen
}

func (e *entry) presence(user string) Presence {
	return Presence{User: user, Status: e.status, Note: e.note, Online: e.onlineCount(), Since: e.since}
}

// Get returns user's presence; ok is false for a user the store never
// heard of.
func (s *Store) Get(user string) (p Presence, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.users[user]
	if e == nil {
		return Presence{User: user}, false
	}
	return e.shown, true
}

// Dialogs returns user's dialogs that have not terminated, in ID order.
func (s *Store) Dialogs(user string) []Dialog {
	_, ds, _ := s.Snapshot(user)
	return ds
}

// Snapshot returns user's presence and dialogs together with the Seq of
// the last change published before them: a reader that starts from a
// snapshot skips changes up to that Seq.
func (s *Store) Snapshot(user string) (Presence, []Dialog, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.users[user]
	if e == nil {
		return Presence{User: user}, nil, s.seq
	}
	return e.shown, e.dialogList(), s.seq
}

// dialogList is the user's dialogs, this store's own and those other
// stores carry, in ID order (an ID this store has is its own; among
// other stores, the first by name wins).
func (e *entry) dialogList() []Dialog {
	n := len(e.dialogs)
	for _, ds := range e.remoteDialogs {
		n += len(ds)
	}
	if n == 0 {
		return nil
	}
	out := e.localDialogs()
	if len(e.remoteDialogs) > 0 {
		seen := make(map[string]struct{}, n)
		for id := range e.dialogs {
			seen[id] = struct{}{}
		}
		names := make([]string, 0, len(e.remoteDialogs))
		for src := range e.remoteDialogs {
			names = append(names, src)
		}
		sort.Strings(names)
		for _, src := range names {
			for _, d := range e.remoteDialogs[src] {
				if _, dup := seen[d.ID]; !dup {
					seen[d.ID] = struct{}{}
					out = append(out, d)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// localDialogs is the user's dialogs from this store's own sources, in
// ID order.
func (e *entry) localDialogs() []Dialog {
	if len(e.dialogs) == 0 {
		return nil
	}
	out := make([]Dialog, 0, len(e.dialogs))
	for _, d := range e.dialogs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Roster returns every known user's presence, merged with what other
// stores reported (SetRemote), sorted by user name.
func (s *Store) Roster() []Presence {
	return s.roster(func(u string, e *entry) (Presence, bool) { return e.shown, true })
}

// LocalRoster returns the presence of every user as this store's own
// sources give it (registrations, browsers, dialogs, choices), without
// what other stores reported; users known only from SetRemote are left
// out. It is what a cluster node tells the others.
func (s *Store) LocalRoster() []Presence {
	return s.roster(func(u string, e *entry) (Presence, bool) {
		return e.presence(u), !e.remoteOnly
	})
}

// LocalEntries is LocalRoster with each user's own dialogs: what a
// cluster node tells the others.
func (s *Store) LocalEntries() []Entry {
	s.mu.Lock()
	out := make([]Entry, 0, len(s.users))
	for u, e := range s.users {
		if !e.remoteOnly {
			out = append(out, Entry{Presence: e.presence(u), Dialogs: e.localDialogs()})
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

func (s *Store) roster(pick func(string, *entry) (Presence, bool)) []Presence {
	s.mu.Lock()
	out := make([]Presence, 0, len(s.users))
	for u, e := range s.users {
		if p, ok := pick(u, e); ok {
			out = append(out, p)
		}
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out
}

// SetRemote is SetRemoteEntries without dialogs: source's users'
// presence only (any dialogs source reported before end).
func (s *Store) SetRemote(source string, users []Presence) {
	var entries []Entry
	if users != nil {
		entries = make([]Entry, len(users))
		for i, p := range users {
			entries[i].Presence = p
		}
	}
	s.SetRemoteEntries(source, entries)
}

// SetRemoteEntries replaces what the store named source (another cluster
// node) reports about users from its own sources: each user's presence
// is merged into what Get, Roster, Snapshot and the change feed show
// (the most engaged status wins, online endpoints add up), and the
// user's dialogs there are listed with the user's own (Snapshot,
// Change.Dialogs). Users the source reported before and not now lose its
// contribution. nil entries forgets the source. Remote entries never
// count as this store's own (LocalRoster, LocalEntries). A change is
// published for every user whose merged presence changed, and one per
// dialog of the source that appeared or changed state, and one with
// state terminated per dialog of the source that is gone: a dialog on
// another node goes through the change feed (and so the dialog
// package's NOTIFYs) as a local one does.
func (s *Store) SetRemoteEntries(source string, entries []Entry) {
	type todo struct {
		user    string
		p       Presence
		dialogs []Dialog
		ok      bool // reported now
	}
	s.mu.Lock()
	var touched []todo
	seen := make(map[string]struct{}, len(entries))
	for _, en := range entries {
		p := en.Presence
		if p.User == "" {
			continue
		}
		if _, dup := seen[p.User]; dup {
			continue
		}
		seen[p.User] = struct{}{}
		ds := cleanDialogs(en.Dialogs)
		e := s.users[p.User]
		if r, ok := e.remoteOf(source); ok && r.Status == p.Status && r.Note == p.Note && r.Online == p.Online &&
			slices.Equal(e.remoteDialogs[source], ds) {
			continue
		}
		touched = append(touched, todo{user: p.User, p: p, dialogs: ds, ok: true})
	}
	for u, e := range s.users {
		_, had := e.remote[source]
		_, hadDialogs := e.remoteDialogs[source]
		if had || hadDialogs {
			if _, still := seen[u]; !still {
				touched = append(touched, todo{user: u})
			}
		}
	}
	s.mu.Unlock()
	sort.Slice(touched, func(i, j int) bool { return touched[i].user < touched[j].user })
	for _, t := range touched {
		s.setRemoteUser(source, t.user, t.p, t.dialogs, t.ok)
	}
}

// setRemoteUser applies source's view of one user: the presence first,
// then each dialog that changed, one change each.
func (s *Store) setRemoteUser(source, user string, p Presence, dialogs []Dialog, reported bool) {
	s.mu.Lock()
	e, known := s.users[user]
	var before []Dialog
	if known {
		before = e.remoteDialogs[source]
	}
	s.mu.Unlock()
	s.update(user, nil, func(e *entry) {
		if !known {
			e.remoteOnly = true
		}
		if !reported {
			delete(e.remote, source)
			return
		}
		if e.remote == nil {
			e.remote = map[string]Presence{}
		}
		e.remote[source] = p
	})
	// Dialogs: gone ones end (terminated), new or changed ones follow in
	// ID order; each change shows the list as it is after it.
	now := make(map[string]Dialog, len(dialogs))
	for _, d := range dialogs {
		now[d.ID] = d
	}
	cur := slices.Clone(before)
	set := func(d Dialog) {
		s.mu.Lock()
		_, shadowed := s.users[user].dialogs[d.ID] // this store's own dialog of that ID is what shows
		s.mu.Unlock()
		dp := &d
		if shadowed {
			dp = nil
		}
		s.update(user, dp, func(e *entry) {
			if len(cur) == 0 {
				delete(e.remoteDialogs, source)
				return
			}
			if e.remoteDialogs == nil {
				e.remoteDialogs = map[string][]Dialog{}
			}
			e.remoteDialogs[source] = slices.Clone(cur)
		})
	}
	for _, d := range before {
		if _, still := now[d.ID]; !still {
			cur = slices.DeleteFunc(cur, func(x Dialog) bool { return x.ID == d.ID })
			d.State = DialogTerminated
			set(d)
		}
	}
	for _, d := range dialogs {
		i := slices.IndexFunc(cur, func(x Dialog) bool { return x.ID == d.ID })
		switch {
		case i >= 0 && cur[i] == d:
			continue
		case i >= 0:
			cur[i] = d
		default:
			cur = append(cur, d)
			sort.Slice(cur, func(i, j int) bool { return cur[i].ID < cur[j].ID })
		}
		set(d)
	}
}

// cleanDialogs returns the dialogs worth keeping from another store's
// list, in ID order: with an ID, not terminated, one per ID.
func cleanDialogs(ds []Dialog) []Dialog {
	var out []Dialog
	for _, d := range ds {
		if d.ID == "" || d.State >= DialogTerminated || slices.ContainsFunc(out, func(x Dialog) bool { return x.ID == d.ID }) {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *entry) remoteOf(source string) (Presence, bool) {
	if e == nil {
		return Presence{}, false
	}
	p, ok := e.remote[source]
	return p, ok
}

// SubscribeOptions tune a Subscription. The zero value buffers 256 changes.
type SubscribeOptions struct {
	// Buffer is how many changes may wait for the reader before the
	// subscription overflows (default 256).
	Buffer int
}

// Subscription is a reader of the store's change feed. Changes arrive on C
// in Seq order. C is closed when ctx ends, Close is called, or the reader
// falls Buffer changes behind; Err then says which (ErrOverflow for the
// last: read Roster again and subscribe anew).
type Subscription struct {
	C <-chan Change

	c     chan Change
	store *Store
	stop  func() bool
	err   error // guarded by store.mu
}

// Subscribe starts a subscription to every change from now on. It ends
// with ctx. A slow reader never delays the producers: once its buffer is
// full the subscription ends with ErrOverflow.
func (s *Store) Subscribe(ctx context.Context, opts SubscribeOptions) *Subscription {
	if opts.Buffer <= 0 {
		opts.Buffer = 256
	}
	c := make(chan Change, opts.Buffer)
	sub := &Subscription{C: c, c: c, store: s}
	s.mu.Lock()
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	sub.stop = context.AfterFunc(ctx, func() { sub.end(context.Cause(ctx)) })
	return sub
}

// Close ends the subscription; C is closed and Err returns
// context.Canceled.
func (sub *Subscription) Close() {
	sub.stop()
	sub.end(context.Canceled)
}

func (sub *Subscription) end(err error) {
	sub.store.mu.Lock()
	defer sub.store.mu.Unlock()
	sub.store.dropLocked(sub, err)
}

// Err returns why C was closed, or nil while it is open.
func (sub *Subscription) Err() error {
	sub.store.mu.Lock()
	defer sub.store.mu.Unlock()
	return sub.err
}

func (s *Store) dropLocked(sub *Subscription, err error) {
	if _, ok := s.subs[sub]; !ok {
		return
	}
	delete(s.subs, sub)
	sub.err = err
	close(sub.c)
}
