// Package bridge makes browsers first-class legs: a WebRTC peer per
// browser call (pion/webrtc) whose media is a media.Endpoint on a packet
// transport, one WebSocket per browser for signaling, call control and
// session events, HMAC tokens, and the softphone page.
package bridge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Claims are what a token grants: who the browser is, until when, and
// what it may do. A list holding "*" allows anything; an empty one
// nothing.
type Claims struct {
	User    string `json:"sub"`
	Expires int64  `json:"exp"` // Unix seconds
	// Routes the browser may call (route names, "*" for any).
	Routes []string `json:"routes,omitempty"`
	// Users the browser may ring (user names, "*" for any).
	Users []string `json:"users,omitempty"`
	// Sessions the browser may watch (call IDs, "room:NAME" or a room
	// name; "*" any).
	Sessions []string `json:"sessions,omitempty"`
}

// Token errors.
var (
	ErrTokenInvalid = errors.New("bridge: invalid token")
	ErrTokenExpired = errors.New("bridge: token expired")
)

// Tokens mints and verifies tokens: base64url(JSON claims) "." base64url
// (HMAC-SHA256 over the first part). Cost: one HMAC per verification.
type Tokens struct{ key []byte }

// NewTokens uses key (at least 16 bytes of secret) to sign tokens.
func NewTokens(key []byte) (*Tokens, error) {
	if len(key) < 16 {
		return nil, errors.New("bridge: token key shorter than 16 bytes")
	}
	return &Tokens{key: append([]byte(nil), key...)}, nil
}

// Mint signs c. A zero Expires is refused at verification.
func (t *Tokens) Mint(c Claims) string {
	body, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(body)
	return p + "." + base64.RawURLEncoding.EncodeToString(t.sign(p))
}

// MintFor is Mint for user, valid for ttl, allowed to call any route and
// ring any user.
func (t *Tokens) MintFor(user string, ttl time.Duration) string {
	return t.Mint(Claims{User: user, Expires: time.Now().Add(ttl).Unix(), Routes: []string{"*"}, Users: []string{"*"}, Sessions: []string{"*"}})
}

func (t *Tokens) sign(p string) []byte {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(p))
	return m.Sum(nil)
}

// Verify checks tok's signature and expiry at now and returns its claims.
func (t *Tokens) Verify(tok string, now time.Time) (Claims, error) {
	if len(tok) > 4096 {
		return Claims{}, fmt.Errorf("%w: too long", ErrTokenInvalid)
	}
	p, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return Claims{}, fmt.Errorf("%w: no signature", ErrTokenInvalid)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, t.sign(p)) {
		return Claims{}, fmt.Errorf("%w: bad signature", ErrTokenInvalid)
	}
	body, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: bad encoding", ErrTokenInvalid)
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || c.User == "" {
		return Claims{}, fmt.Errorf("%w: bad claims", ErrTokenInvalid)
	}
	if c.Expires == 0 || now.Unix() >= c.Expires {
		return Claims{}, ErrTokenExpired
	}
	return c, nil
}

// allowed reports whether name matches one of the patterns (path.Match
// globs: "*", "sales-*").
func allowed(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// MayCall reports whether the claims allow calling target (a route or a
// user name).
func (c Claims) MayCall(target string) bool {
	return allowed(c.Routes, target) || allowed(c.Users, target)
}

// MayWatch reports whether the claims allow watching session (a call ID,
// or "room:NAME": for a room, a pattern may name the room with or without
// its "room:" prefix).
func (c Claims) MayWatch(session string) bool {
	if allowedID(c.Sessions, session) {
		return true
	}
	room, ok := strings.CutPrefix(session, "room:")
	return ok && allowedID(c.Sessions, room)
}

// allowedID is allowed for IDs in which "/" is an ordinary character (a
// SIP Call-ID may hold one; path.Match's "*" stops at it).
func allowedID(patterns []string, id string) bool {
	id = strings.ReplaceAll(id, "/", "\x00")
	for _, p := range patterns {
		if ok, _ := path.Match(strings.ReplaceAll(p, "/", "\x00"), id); ok {
			return true
		}
	}
	return false
}
