package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/presence"
)

// SubscriptionLimits bound the SUBSCRIBE dialogs (RFC 6665) the agent
// serves. The zero value means the defaults below.
type SubscriptionLimits struct {
	// MinExpires is the shortest subscription accepted (shorter ones get
	// 423 with Min-Expires); default 60 s.
	MinExpires time.Duration
	// MaxExpires caps the granted lifetime; default 3600 s.
	MaxExpires time.Duration
	// DefaultExpires is granted when SUBSCRIBE has no Expires; default
	// 3600 s (RFC 3856 and RFC 4235 both suggest one hour).
	DefaultExpires time.Duration
	// MaxTotal and MaxPerSource bound live subscriptions overall and per
	// source IP address (503 beyond); defaults 10000 and 64.
	MaxTotal, MaxPerSource int
}

func (l SubscriptionLimits) withDefaults() SubscriptionLimits {
	if l.MinExpires <= 0 {
		l.MinExpires = 60 * time.Second
	}
	if l.MaxExpires <= 0 {
		l.MaxExpires = time.Hour
	}
	if l.DefaultExpires <= 0 {
		l.DefaultExpires = time.Hour
	}
	l.DefaultExpires = min(max(l.DefaultExpires, l.MinExpires), l.MaxExpires)
	if l.MaxTotal <= 0 {
		l.MaxTotal = 10000
	}
	if l.MaxPerSource <= 0 {
		l.MaxPerSource = 64
	}
	return l
}

// Event packages the agent serves as a notifier.
const (
	eventPresence = "presence" // RFC 3856, PIDF bodies
	eventDialog   = "dialog"   // RFC 4235, dialog-info bodies
)

const allowEvents = "presence, dialog, refer"

var eventContentType = map[string]string{
	eventPresence: "application/pidf+xml",
	eventDialog:   "application/dialog-info+xml",
}

// maxNotifyQueue bounds the NOTIFYs waiting per subscription; beyond it
// the oldest queued state is dropped (each body is full state, so the
// watcher still ends up right).
const maxNotifyQueue = 16

// subscriptions is the agent's table of live SUBSCRIBE dialogs.
type subscriptions struct {
	mu        sync.Mutex
	byKey     map[string]*subscription
	byUser    map[string]map[*subscription]struct{}
	perSource map[netip.Addr]int
	wg        sync.WaitGroup // NOTIFY senders
	closed    bool
}

// subscription is one SUBSCRIBE dialog in which we are the notifier.
type subscription struct {
	a       *Agent
	log     *slog.Logger
	key     string
	pkg     string
	eventID string
	user    string // whose state is watched
	entity  string // sip:user@host as subscribed
	source  netip.Addr

	callID              string
	localTag, remoteTag string
	localURI, remoteURI sip.Uri
	remoteTarget        sip.Uri
	destination         string
	transport           string
	routes              []string
	ip                  netip.Addr

	mu       sync.Mutex
	expires  time.Time
	cseq     uint32
	version  uint32
	queue    []notifyItem
	sending  bool
	ended    bool
	minSeq   uint64 // changes up to this Seq are in the initial NOTIFY
	lastPres presence.Presence
	havePres bool
}

// notifyItem is one NOTIFY to send: the state it carries, and for the
// last one the reason the subscription terminated.
type notifyItem struct {
	terminated string // "" while active; else "timeout", "deactivated", "noresource" or "-" (no reason)
	pres       presence.Presence
	dialogs    []presence.Dialog
}

func subscriptionKey(callID, fromTag, toTag string) string {
	return callID + "\x00" + fromTag + "\x00" + toTag
}

func (a *Agent) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	log := a.log.With("call_id", callIDOf(req), "source", req.Source())
	if code, problem := validateRequest(req); code != 0 {
		a.rateLog(log, "sip: bad SUBSCRIBE", "problem", problem)
		a.respond(req, tx, code, problem)
		return
	}
	evh := req.GetHeader("Event")
	if evh == nil {
		evh = req.GetHeader("o")
	}
	if evh == nil {
		a.rateLog(log, "sip: SUBSCRIBE without Event")
		a.respond(req, tx, 400, "Bad Request (missing Event)")
		return
	}
	ev, err := ParseEvent(evh.Value())
	if err != nil {
		a.rateLog(log, "sip: SUBSCRIBE with a bad Event header", "event", evh.Value(), "error", err)
		a.respond(req, tx, 400, "Bad Request (Event)")
		return
	}
	if (ev.Package != eventPresence && ev.Package != eventDialog) || a.cfg.Presence == nil {
		log.Info("sip: SUBSCRIBE for an event package we do not serve", "event", ev.Package)
		res := sip.NewResponseFromRequest(req, 489, "Bad Event", nil)
		res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
		_ = tx.Respond(res)
		return
	}
	if _, tagged := req.To().Params.Get("tag"); tagged {
		a.refreshSubscription(req, tx, ev, log)
		return
	}
	if !acceptsType(req, eventContentType[ev.Package]) {
		res := sip.NewResponseFromRequest(req, 406, "Not Acceptable", nil)
		res.AppendHeader(sip.NewHeader("Accept", eventContentType[ev.Package]))
		_ = tx.Respond(res)
		return
	}
	lim := a.cfg.Subscriptions
	expires, code := subscribeExpires(req, lim)
	switch code {
	case 400:
		a.rateLog(log, "sip: SUBSCRIBE with a bad Expires")
		a.respond(req, tx, 400, "Bad Request (Expires)")
		return
	case 423:
		res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(lim.MinExpires.Seconds()))))
		_ = tx.Respond(res)
		return
	}
	r := a.cfg.Registrar
	if r == nil {
		log.Info("sip: SUBSCRIBE refused: no user directory")
		a.respond(req, tx, 403, "Forbidden (no user directory)")
		return
	}
	authUser, ok := a.authorizeSubscribe(req, tx, log)
	if !ok {
		return
	}
	user := requestUser(req)
	if _, known := r.Directory.Lookup(user); !known {
		log.Info("sip: SUBSCRIBE for an unknown user", "user", user, "event", ev.Package)
		a.respond(req, tx, 404, "Not Found")
		return
	}
	fixContact(req)
	contact := req.Contact()
	if contact == nil {
		a.respond(req, tx, 400, "Bad Request (missing Contact)")
		return
	}
	fromTag, _ := req.From().Params.Get("tag")
	src, _ := netip.ParseAddrPort(req.Source())
	s := &subscription{
		a: a, pkg: ev.Package, eventID: ev.ID, user: user, source: src.Addr().Unmap(),
		entity:   (&sip.Uri{Scheme: "sip", User: user, Host: req.Recipient.Host}).String(),
		callID:   callIDOf(req),
		localTag: sip.GenerateTagN(16), remoteTag: fromTag,
		localURI: req.To().Address, remoteURI: req.From().Address, remoteTarget: contact.Address,
		destination: req.Source(), transport: req.Transport(), ip: a.advertiseIP(sourceIP(req)),
		expires: time.Now().Add(expires),
	}
	for _, h := range req.GetHeaders("Record-Route") {
		s.routes = append(s.routes, h.Value())
	}
	s.key = subscriptionKey(s.callID, s.remoteTag, s.localTag)
	s.log = a.log.With("call_id", s.callID, "event", s.pkg, "user", user, "subscriber", authUser)
	if expires > 0 {
		if why := a.subs.add(s, lim); why != "" {
			a.rateLog(log, "sip: SUBSCRIBE refused", "reason", why)
			res := sip.NewResponseFromRequest(req, 503, "Service Unavailable ("+why+")", nil)
			res.AppendHeader(sip.NewHeader("Retry-After", "300"))
			_ = tx.Respond(res)
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if res.To().Params == nil {
		res.To().Params = sip.NewParams()
	}
	res.To().Params.Add("tag", s.localTag)
	res.AppendHeader(a.contactFor(s.ip, s.transport))
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("sip: SUBSCRIBE response failed", "error", err)
	}
	s.log.Info("sip: subscription started", "expires", expires)
	// The first NOTIFY carries the current state; with Expires 0 (a
	// fetch) it is also the last.
	pres, dialogs, seq := a.cfg.Presence.Snapshot(user)
	s.mu.Lock()
	s.minSeq = seq
	s.mu.Unlock()
	item := notifyItem{pres: pres, dialogs: dialogs}
	if expires == 0 {
		item.terminated = "timeout"
	}
	s.enqueue(item)
}

// refreshSubscription handles a SUBSCRIBE inside an existing subscription:
// a refresh, or with Expires 0 the end of it.
func (a *Agent) refreshSubscription(req *sip.Request, tx sip.ServerTransaction, ev EventHeader, log *slog.Logger) {
	fromTag, _ := req.From().Params.Get("tag")
	toTag, _ := req.To().Params.Get("tag")
	s := a.subs.get(subscriptionKey(callIDOf(req), fromTag, toTag))
	if s == nil || s.pkg != ev.Package || s.eventID != ev.ID {
		a.respond(req, tx, 481, "Subscription Does Not Exist")
		return
	}
	lim := a.cfg.Subscriptions
	expires, code := subscribeExpires(req, lim)
	switch code {
	case 400:
		a.respond(req, tx, 400, "Bad Request (Expires)")
		return
	case 423:
		res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(lim.MinExpires.Seconds()))))
		_ = tx.Respond(res)
		return
	}
	if c := req.Contact(); c != nil {
		fixContact(req)
		s.mu.Lock()
		s.remoteTarget = req.Contact().Address
		s.mu.Unlock()
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(a.contactFor(s.ip, s.transport))
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	_ = tx.Respond(res)
	pres, dialogs, seq := a.cfg.Presence.Snapshot(s.user)
	item := notifyItem{pres: pres, dialogs: dialogs}
	if expires == 0 {
		s.log.Info("sip: subscription ended by the subscriber")
		item.terminated = "-"
		a.subs.remove(s)
	} else {
		s.mu.Lock()
		s.expires = time.Now().Add(expires)
		s.minSeq = max(s.minSeq, seq)
		s.mu.Unlock()
	}
	// RFC 6665 4.2.1.2: a refresh is answered with a NOTIFY of the state.
	s.enqueue(item)
}

// subscribeExpires reads the Expires of a SUBSCRIBE: the default without
// one, capped at the maximum; code is 400 for garbage and 423 under the
// minimum (0 is allowed: a fetch or an unsubscribe).
func subscribeExpires(req *sip.Request, lim SubscriptionLimits) (time.Duration, int) {
	h := req.GetHeader("Expires")
	if h == nil {
		return lim.DefaultExpires, 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, 400
	}
	d := time.Duration(n) * time.Second
	if d != 0 && d < lim.MinExpires {
		return 0, 423
	}
	return min(d, lim.MaxExpires), 0
}

// acceptsType reports whether the request's Accept headers allow ct (no
// Accept header means the package's default, which ct is).
func acceptsType(req *sip.Request, ct string) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	for _, h := range hs {
		for _, v := range strings.Split(h.Value(), ",") {
			v = strings.ToLower(strings.TrimSpace(strings.SplitN(v, ";", 2)[0]))
			if v == ct || v == "*/*" || v == "application/*" || v == "" {
				return true
			}
		}
	}
	return false
}

// authorizeSubscribe makes every subscriber prove it is a directory user
// (407 digest, like INVITE), unless InviteAuth is InviteAuthNone: presence
// tells who is home, so guests get none.
func (a *Agent) authorizeSubscribe(req *sip.Request, tx sip.ServerTransaction, log *slog.Logger) (string, bool) {
	if a.cfg.InviteAuth == InviteAuthNone {
		return "", true
	}
	r := a.cfg.Registrar
	src := sourceIP(req)
	if r.Limiter.Blocked(src) {
		a.respond(req, tx, 403, "Forbidden")
		return "", false
	}
	fromUser := req.From().Address.User
	user, ok := r.digest(req, tx, log, true, src, "from", fromUser)
	if !ok {
		return "", false
	}
	if _, known := r.Directory.Lookup(fromUser); known && user != fromUser {
		a.authFailed(src, user, log, "sip: credentials do not match From", "method", req.Method.String(), "user", user, "from", fromUser)
		a.respond(req, tx, 403, "Forbidden (credentials do not match From)")
		return "", false
	}
	r.Limiter.Succeed(src, user)
	return user, true
}

// rateLog logs a warning about bad input through the agent's throttle.
func (a *Agent) rateLog(log *slog.Logger, msg string, args ...any) {
	if ok, suppressed := a.malformedLog.allow(time.Now()); ok {
		if suppressed > 0 {
			args = append(args, "suppressed", suppressed)
		}
		log.Warn(msg, args...)
	}
}

func (t *subscriptions) add(s *subscription, lim SubscriptionLimits) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return "shutting down"
	case len(t.byKey) >= lim.MaxTotal:
		return "too many subscriptions"
	case t.perSource[s.source] >= lim.MaxPerSource:
		return "too many subscriptions from this address"
	}
	if t.byKey == nil {
		t.byKey, t.byUser, t.perSource = map[string]*subscription{}, map[string]map[*subscription]struct{}{}, map[netip.Addr]int{}
	}
	t.byKey[s.key] = s
	if t.byUser[s.user] == nil {
		t.byUser[s.user] = map[*subscription]struct{}{}
	}
	t.byUser[s.user][s] = struct{}{}
	t.perSource[s.source]++
	return ""
}

func (t *subscriptions) remove(s *subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey[s.key] != s {
		return
	}
	delete(t.byKey, s.key)
	delete(t.byUser[s.user], s)
	if len(t.byUser[s.user]) == 0 {
		delete(t.byUser, s.user)
	}
	if t.perSource[s.source]--; t.perSource[s.source] <= 0 {
		delete(t.perSource, s.source)
	}
}

func (t *subscriptions) get(key string) *subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byKey[key]
}

func (t *subscriptions) forUser(user string) []*subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*subscription, 0, len(t.byUser[user]))
	for s := range t.byUser[user] {
		out = append(out, s)
	}
	return out
}

func (t *subscriptions) all() []*subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*subscription, 0, len(t.byKey))
	for _, s := range t.byKey {
		out = append(out, s)
	}
	return out
}

// Subscriptions returns how many SUBSCRIBE dialogs the agent serves now.
func (a *Agent) Subscriptions() int { return a.subs.count() }

// count returns how many subscriptions are live.
func (t *subscriptions) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byKey)
}

// expire ends the subscriptions whose time is up (NOTIFY terminated,
// reason timeout).
func (t *subscriptions) expire(now time.Time, store *presence.Store) {
	for _, s := range t.all() {
		s.mu.Lock()
		due := now.After(s.expires)
		s.mu.Unlock()
		if due {
			s.log.Info("sip: subscription expired")
			t.remove(s)
			pres, dialogs, _ := store.Snapshot(s.user)
			s.enqueue(notifyItem{terminated: "timeout", pres: pres, dialogs: dialogs})
		}
	}
}

// closeAll ends every subscription with a terminated NOTIFY (reason
// deactivated: the subscriber may subscribe again at once) and waits up
// to d for the NOTIFYs to go out.
func (t *subscriptions) closeAll(d time.Duration, store *presence.Store) {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	for _, s := range t.all() {
		t.remove(s)
		item := notifyItem{terminated: "deactivated"}
		if store != nil {
			item.pres, item.dialogs, _ = store.Snapshot(s.user)
		}
		s.enqueue(item)
	}
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// onChange queues NOTIFYs for the subscriptions watching the user of c.
func (t *subscriptions) onChange(c presence.Change) {
	for _, s := range t.forUser(c.Presence.User) {
		s.mu.Lock()
		stale := c.Seq <= s.minSeq
		s.mu.Unlock()
		if stale {
			continue
		}
		switch s.pkg {
		case eventPresence:
			s.enqueue(notifyItem{pres: c.Presence})
		case eventDialog:
			if c.Dialog == nil {
				continue
			}
			ds := append([]presence.Dialog(nil), c.Dialogs...)
			if c.Dialog.State == presence.DialogTerminated {
				ds = append(ds, *c.Dialog) // shown terminated once, then gone
			}
			s.enqueue(notifyItem{pres: c.Presence, dialogs: ds})
		}
	}
}

// resync queues the full current state for every subscription (after the
// change feed overflowed).
func (t *subscriptions) resync(store *presence.Store) {
	for _, s := range t.all() {
		pres, dialogs, seq := store.Snapshot(s.user)
		s.mu.Lock()
		s.minSeq = max(s.minSeq, seq)
		s.havePres = false
		s.mu.Unlock()
		s.enqueue(notifyItem{pres: pres, dialogs: dialogs})
	}
}

// enqueue queues a NOTIFY and starts the subscription's sender if idle.
// NOTIFYs of one subscription go out one at a time, in order (RFC 6665
// 4.2.2: the next waits for the previous one's response).
func (s *subscription) enqueue(it notifyItem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.pkg == eventPresence && it.terminated == "" {
		if s.havePres && s.lastPres.Status == it.pres.Status && s.lastPres.Note == it.pres.Note {
			return // nothing a watcher sees changed
		}
		s.lastPres, s.havePres = it.pres, true
	}
	if it.terminated != "" {
		s.ended = true
	}
	s.queue = append(s.queue, it)
	if len(s.queue) > maxNotifyQueue {
		s.queue = append(s.queue[:0], s.queue[len(s.queue)-maxNotifyQueue:]...)
	}
	if !s.sending {
		s.sending = true
		s.a.subs.wg.Add(1)
		go s.send()
	}
}

func (s *subscription) send() {
	defer s.a.subs.wg.Done()
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.sending = false
			s.mu.Unlock()
			return
		}
		it := s.queue[0]
		s.queue = s.queue[1:]
		s.cseq++
		req := s.notifyRequest(it)
		s.version++
		s.mu.Unlock()
		if err := s.a.sendNotify(req); err != nil {
			s.log.Info("sip: NOTIFY failed; subscription ended", "error", err)
			s.a.subs.remove(s)
			s.mu.Lock()
			s.ended, s.queue = true, nil
			s.mu.Unlock()
		}
	}
}

// notifyRequest builds the NOTIFY for it; s.mu is held.
func (s *subscription) notifyRequest(it notifyItem) *sip.Request {
	req := sip.NewRequest(sip.NOTIFY, s.remoteTarget)
	req.SetTransport(s.transport)
	req.SetDestination(s.destination)
	for _, r := range s.routes {
		req.AppendHeader(sip.NewHeader("Route", r))
	}
	from := &sip.FromHeader{Address: s.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", s.localTag)
	to := &sip.ToHeader{Address: s.remoteURI, Params: sip.NewParams()}
	to.Params.Add("tag", s.remoteTag)
	callID := sip.CallIDHeader(s.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: s.cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(s.a.contactFor(s.ip, s.transport))
	req.AppendHeader(sip.NewHeader("Event", EventHeader{Package: s.pkg, ID: s.eventID}.String()))
	state := "active;expires=" + strconv.Itoa(max(0, int(time.Until(s.expires).Seconds())))
	switch it.terminated {
	case "":
	case "-":
		state = "terminated"
	default:
		state = "terminated;reason=" + it.terminated
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", eventContentType[s.pkg]))
	if s.pkg == eventPresence {
		req.SetBody(pidfBody(s.entity, it.pres))
	} else {
		req.SetBody(dialogInfoBody(s.entity, s.version, it.dialogs))
	}
	return req
}

// sendNotify sends a NOTIFY and waits for its final response (bounded by
// Timer F over UDP; 10 s at most).
func (a *Agent) sendNotify(req *sip.Request) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := a.clientFor(req.Transport()).Do(ctx, req)
	if err != nil {
		return err
	}
	if res == nil {
		// sipgo's Do returns (nil, nil) when the transaction ends
		// without a final response (transport closed under it).
		return errors.New("sip: NOTIFY transaction ended without a response")
	}
	if !res.IsSuccess() {
		return fmt.Errorf("sip: NOTIFY answered %d %s", res.StatusCode, res.Reason)
	}
	return nil
}

// watchPresence feeds presence changes to the subscriptions until ctx
// ends; when it falls behind it resynchronises everyone.
func (a *Agent) watchPresence(ctx context.Context) {
	overflowed := false
	for ctx.Err() == nil {
		sub := a.cfg.Presence.Subscribe(ctx, presence.SubscribeOptions{Buffer: 4096})
		if overflowed {
			a.log.Warn("sip: presence changes overflowed; sending full state to every watcher")
			a.subs.resync(a.cfg.Presence)
		}
		for c := range sub.C {
			a.subs.onChange(c)
		}
		overflowed = true
	}
}
