package sip

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/presence"
)

// PIDFStatus is what a presence document (RFC 3863, with RFC 4480
// activities) says about its person.
type PIDFStatus struct {
	Open       bool     // some tuple's <basic> is "open"
	Activities []string // local names of the person's activities: "away", "on-the-phone", "busy", ...
	Note       string   // the first non-empty <note> (PIDF or data-model)
}

// maxPIDF bounds the presence documents we parse.
const maxPIDF = 16 * 1024

// ParsePIDF reads a PIDF document: whether any tuple is open, the
// person's activities and the first note. Namespaces are matched by local
// name, so prefixes do not matter. It refuses documents over 16 KiB, ones
// whose root is not <presence>, and nesting deeper than 32.
func ParsePIDF(body []byte) (PIDFStatus, error) {
	var st PIDFStatus
	if len(body) > maxPIDF {
		return st, errors.New("sip: PIDF document too large")
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	dec.Strict = true
	var path []string
	sawRoot := false
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("sip: PIDF: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(path) == 0 {
				if sawRoot || t.Name.Local != "presence" {
					return st, fmt.Errorf("sip: PIDF root is <%s>, not <presence>", t.Name.Local)
				}
				sawRoot = true
			}
			if len(path) >= 32 {
				return st, errors.New("sip: PIDF nested too deep")
			}
			if len(path) > 0 && path[len(path)-1] == "activities" && len(st.Activities) < 16 {
				st.Activities = append(st.Activities, t.Name.Local)
			}
			path = append(path, t.Name.Local)
			text.Reset()
		case xml.CharData:
			if text.Len() < 1024 {
				text.Write(t)
			}
		case xml.EndElement:
			if len(path) == 0 {
				return st, errors.New("sip: PIDF: unbalanced end tag")
			}
			switch path[len(path)-1] {
			case "basic":
				if strings.EqualFold(strings.TrimSpace(text.String()), "open") {
					st.Open = true
				}
			case "note":
				if st.Note == "" {
					st.Note = strings.TrimSpace(text.String())
				}
			}
			path = path[:len(path)-1]
			text.Reset()
		}
	}
	if !sawRoot {
		return st, errors.New("sip: PIDF: no <presence> element")
	}
	return st, nil
}

// Status maps the document to a chosen presence status: closed is
// offline (appear offline), an away-like activity is away, anything else
// open is available. On-the-phone is not taken from a phone's document:
// calls through us set it themselves.
func (p PIDFStatus) Status() presence.Status {
	if !p.Open {
		return presence.Offline
	}
	for _, a := range p.Activities {
		switch a {
		case "away", "vacation", "sleeping", "appointment", "holiday", "steering", "travel":
			return presence.Away
		}
	}
	return presence.Available
}

// publications holds the presence states phones published (RFC 3903),
// by entity tag.
type publications struct {
	mu     sync.Mutex
	byETag map[string]*publication
}

type publication struct {
	user    string
	status  presence.Status
	note    string
	expires time.Time
}

// maxPublications bounds the entity tags kept (a phone refreshes its own;
// each user has a handful at most).
const maxPublications = 10000

// onPublish handles PUBLISH for the presence event package: a directory
// user's phone states the user's status (basic open/closed, away, a note),
// which becomes the user's chosen status in the presence store.
func (a *Agent) onPublish(req *sip.Request, tx sip.ServerTransaction) {
	log := a.log.With("call_id", callIDOf(req), "source", req.Source())
	if code, problem := validateRequest(req); code != 0 {
		a.rateLog(log, "sip: bad PUBLISH", "problem", problem)
		a.respond(req, tx, code, problem)
		return
	}
	evh := req.GetHeader("Event")
	if evh == nil {
		evh = req.GetHeader("o")
	}
	var ev EventHeader
	var err error
	if evh != nil {
		ev, err = ParseEvent(evh.Value())
	}
	if evh == nil || err != nil {
		a.rateLog(log, "sip: PUBLISH without a usable Event header")
		a.respond(req, tx, 400, "Bad Request (Event)")
		return
	}
	if ev.Package != eventPresence || a.cfg.Presence == nil {
		res := sip.NewResponseFromRequest(req, 489, "Bad Event", nil)
		res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
		_ = tx.Respond(res)
		return
	}
	r := a.cfg.Registrar
	if r == nil {
		a.respond(req, tx, 403, "Forbidden (no user directory)")
		return
	}
	lim := a.cfg.Subscriptions
	expires, code := subscribeExpires(req, lim)
	if code == 423 {
		res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(lim.MinExpires.Seconds()))))
		_ = tx.Respond(res)
		return
	} else if code != 0 {
		a.respond(req, tx, 400, "Bad Request (Expires)")
		return
	}
	body := req.Body()
	if len(body) > 0 {
		ct := ""
		if h := req.ContentType(); h != nil {
			ct = strings.ToLower(strings.TrimSpace(strings.SplitN(h.Value(), ";", 2)[0]))
		}
		if ct != "application/pidf+xml" {
			res := sip.NewResponseFromRequest(req, 415, "Unsupported Media Type", nil)
			res.AppendHeader(sip.NewHeader("Accept", "application/pidf+xml"))
			_ = tx.Respond(res)
			return
		}
		if len(body) > maxPIDF {
			a.respond(req, tx, 413, "Request Entity Too Large")
			return
		}
	}
	authUser, ok := a.authorizeSubscribe(req, tx, log)
	if !ok {
		return
	}
	user := requestUser(req)
	if _, known := r.Directory.Lookup(user); !known {
		a.respond(req, tx, 404, "Not Found")
		return
	}
	if authUser != "" && authUser != user {
		log.Warn("sip: PUBLISH for another user's presence", "user", authUser, "for", user)
		a.respond(req, tx, 403, "Forbidden (not your presence)")
		return
	}
	ifMatch := ""
	if h := req.GetHeader("SIP-If-Match"); h != nil {
		ifMatch = strings.TrimSpace(h.Value())
	}
	var st PIDFStatus
	if len(body) > 0 {
		if st, err = ParsePIDF(body); err != nil {
			a.rateLog(log, "sip: PUBLISH with a bad PIDF body", "error", err)
			a.respond(req, tx, 400, "Bad Request (PIDF)")
			return
		}
	}
	etag, code := a.pubs.apply(user, ifMatch, len(body) > 0, st, expires, log)
	switch code {
	case 412:
		a.respond(req, tx, 412, "Conditional Request Failed")
		return
	case 400:
		a.respond(req, tx, 400, "Bad Request (PUBLISH without a body)")
		return
	case 503:
		a.respond(req, tx, 503, "Service Unavailable (too many publications)")
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if etag != "" {
		res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	_ = tx.Respond(res)
	if len(body) > 0 {
		log.Info("sip: presence published", "user", user, "status", st.Status(), "expires", expires)
	}
	a.pubs.sync(a.cfg.Presence, user)
}

// apply records one PUBLISH: initial (no If-Match, body), refresh
// (If-Match, no body), modify (both) or remove (If-Match, Expires 0). It
// returns the new entity tag, or the status to refuse it with.
func (p *publications) apply(user, ifMatch string, hasBody bool, st PIDFStatus, expires time.Duration, log *slog.Logger) (string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byETag == nil {
		p.byETag = map[string]*publication{}
	}
	var pub *publication
	if ifMatch != "" {
		pub = p.byETag[ifMatch]
		if pub == nil || pub.user != user {
			return "", 412
		}
		delete(p.byETag, ifMatch)
	} else if !hasBody {
		return "", 400
	}
	if expires == 0 {
		if pub != nil {
			log.Info("sip: presence publication removed", "user", user)
		}
		return "", 0
	}
	if pub == nil {
		if len(p.byETag) >= maxPublications {
			return "", 503
		}
		pub = &publication{user: user}
	}
	if hasBody {
		pub.status, pub.note = st.Status(), st.Note
	}
	pub.expires = time.Now().Add(expires)
	etag := sip.GenerateTagN(16)
	p.byETag[etag] = pub
	return etag, 0
}

// sync sets user's chosen status from their newest live publication, or
// back to available without a note when none is left.
func (p *publications) sync(store *presence.Store, user string) {
	p.mu.Lock()
	var newest *publication
	for _, pub := range p.byETag {
		if pub.user == user && (newest == nil || pub.expires.After(newest.expires)) {
			newest = pub
		}
	}
	status, note := presence.Available, ""
	if newest != nil {
		status, note = newest.status, newest.note
	}
	p.mu.Unlock()
	_ = store.Set(user, status, note)
}

// expire drops publications whose time is up and resets their users.
func (p *publications) expire(now time.Time, store *presence.Store) {
	p.mu.Lock()
	users := map[string]bool{}
	for etag, pub := range p.byETag {
		if now.After(pub.expires) {
			delete(p.byETag, etag)
			users[pub.user] = true
		}
	}
	p.mu.Unlock()
	for u := range users {
		p.sync(store, u)
	}
}
