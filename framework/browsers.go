package framework

import (
	"fmt"

	"github.com/switchboard-voice/switchboard/bridge"
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
}

// newBridge starts the browser bridge: each browser call becomes a call
// like a SIP one.
func (s *Server) newBridge(bc *BrowserConfig) error {
	tokens, err := bridge.NewTokens(bc.TokenKey)
	if err != nil {
		return fmt.Errorf("framework: browsers: %w", err)
	}
	b, err := bridge.New(bridge.Config{Tokens: tokens, ICEAddr: bc.ICEAddr, PublicIPs: bc.PublicIPs,
		AllowedOrigins: bc.AllowedOrigins, MediaTimeout: s.cfg.MediaTimeout, Logger: s.log,
		OnCall: func(l *bridge.Leg) { s.StartCall(l) }})
	if err != nil {
		return err
	}
	s.browsers, s.tokens = b, tokens
	return nil
}

// Tokens mints the tokens browsers log in with (nil without
// Config.Browsers).
func (s *Server) Tokens() *bridge.Tokens { return s.tokens }

// Bridge returns the browser bridge (nil without Config.Browsers).
func (s *Server) Bridge() *bridge.Bridge { return s.browsers }
