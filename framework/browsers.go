package framework

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
)

// BrowserConfig turns on browser legs (package bridge): the WebSocket
// endpoint /ws for signaling, control and events, WebRTC media on one
// shared UDP port, and the softphone page at / (the status page moves to
// /status).
type BrowserConfig struct {
	// TokenKey signs the tokens browsers log in with (at least 16 secret
	// bytes; keep it across restarts so issued tokens stay valid).
	TokenKey []byte
	// ICEAddr is the UDP address of every browser call's media (default
	// 0.0.0.0:0: a free port; set one for a firewall rule).
	ICEAddr string
	// PublicIPs are advertised to browsers instead of local addresses.
	PublicIPs []string
	// AllowedOrigins may open /ws besides the page's own origin.
	AllowedOrigins []string
	// ICEServers are STUN/TURN servers for the browsers' calls (none by
	// default: host candidates only, no public server is contacted).
	ICEServers []ICEServer
}

// ICEServer is a STUN or TURN server: "stun:host:3478",
// "turn:host:3478?transport=udp" with a username and credential.
type ICEServer struct {
	URLs                 []string
	Username, Credential string
}

// newBridge starts the browser bridge: each browser call becomes a call
// like a SIP one.
func (s *Server) newBridge(bc *BrowserConfig) error {
	tokens, err := bridge.NewTokens(bc.TokenKey)
	if err != nil {
		return fmt.Errorf("framework: browsers: %w", err)
	}
	var ice []webrtc.ICEServer
	for _, is := range bc.ICEServers {
		ice = append(ice, webrtc.ICEServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	b, err := bridge.New(bridge.Config{Tokens: tokens, ICEAddr: bc.ICEAddr, PublicIPs: bc.PublicIPs, ICEServers: ice,
		AllowedOrigins: bc.AllowedOrigins, MediaTimeout: s.cfg.MediaTimeout, Logger: s.log,
		OnCall: func(l *bridge.Leg) { s.StartCall(l) }, Feeds: browserFeeds{s}, Roster: s.browserRoster,
		Control: s.browserControl,
		Online:  func(user string, n int) { s.presence.SetOnline(user, "browser", n) },
		SetState: func(user, status, note string) error {
			st, err := presence.ParseStatus(status)
			if err != nil {
				return err
			}
			return s.presence.Set(user, st, note)
		}})
	if err != nil {
		return err
	}
	s.browsers, s.tokens = b, tokens
	s.AddDialer(browserDialer{b})
	return nil
}

// answerWebRTC is sip's WebRTC hook: browser SIP libraries over /sip
// offer WebRTC media, which the bridge answers.
func (s *Server) answerWebRTC(offer []byte) (*sip.WebRTCMedia, error) {
	ep, answer, closeFn, err := s.browsers.AnswerOffer(offer)
	if err != nil {
		return nil, err
	}
	return &sip.WebRTCMedia{Endpoint: ep, Answer: answer, Close: closeFn}, nil
}

// browserDialer rings a user's logged-in browsers (a target that is a
// plain user name): Dial forks it with the user's SIP phones.
type browserDialer struct{ b *bridge.Bridge }

func (d browserDialer) Dial(ctx context.Context, target string, opts DialOptions) (Signaling, error) {
	if strings.ContainsAny(target, "@:") || opts.Trunk != "" {
		return nil, fmt.Errorf("browsers: %s is not a user: %w", target, ErrNotFound)
	}
	from := opts.CallerID.Name
	if from == "" {
		from = opts.CallerID.Number
	}
	leg, err := d.b.Dial(ctx, target, from)
	switch {
	case errors.Is(err, bridge.ErrNoBrowser):
		return nil, fmt.Errorf("browsers: %s: %w", target, ErrNotFound)
	case errors.Is(err, bridge.ErrDeclined):
		return nil, fmt.Errorf("browsers: %s: %w", target, ErrDeclined)
	case err != nil:
		return nil, err
	}
	return leg, nil
}

// browserControl applies what a browser did to its own call: a mute
// (published like Leg.Mute) or a custom signal on the call's stream.
func (s *Server) browserControl(legID, op, name string, payload json.RawMessage) {
	l := s.Leg(legID)
	if l == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		switch op {
		case "mute":
			err = l.Mute(ctx)
		case "unmute":
			err = l.Unmute(ctx)
		case "signal":
			id, ok := strings.CutPrefix(l.Where(), "call:")
			s.mu.Lock()
			c := s.byID[id]
			s.mu.Unlock()
			if !ok || c == nil {
				return
			}
			err = c.Signal(ctx, name, payload)
		}
		if err != nil {
			s.log.Info("browser control failed", "leg_id", legID, "op", op, "error", err)
		}
	}()
}

// presenceMessage is a presence for the browsers' roster.
func presenceMessage(p Presence) bridge.Message {
	return bridge.Message{Type: "presence", User: p.User, Status: p.Status.String(), Text: p.Note}
}

// browserRoster is every user's presence, for a browser that logs in.
func (s *Server) browserRoster() []bridge.Message {
	var out []bridge.Message
	for _, p := range s.presence.Roster() {
		out = append(out, presenceMessage(p))
	}
	return out
}

// Tokens mints the tokens browsers log in with (nil without
// Config.Browsers).
func (s *Server) Tokens() *bridge.Tokens { return s.tokens }

// Bridge returns the browser bridge (nil without Config.Browsers).
func (s *Server) Bridge() *bridge.Bridge { return s.browsers }
