package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// Config configures a Bridge.
type Config struct {
	// Tokens verifies the token every WebSocket client presents. Required.
	Tokens *Tokens
	// ICEAddr is the one UDP address every browser leg's media uses (pion's
	// UDP mux), so a firewall needs one rule. Port 0 picks a free port.
	// Default 0.0.0.0:0.
	ICEAddr string
	// PublicIPs are advertised as host candidates instead of the local
	// addresses (a server behind 1:1 NAT).
	PublicIPs []string
	// ICEServers are STUN/TURN servers offered to the browsers and used by
	// the server; none by default (no public server is ever contacted).
	ICEServers []webrtc.ICEServer
	// AllowedOrigins are the Origins allowed to open a WebSocket besides
	// the page's own (same-origin). "*" allows any.
	AllowedOrigins []string
	// OnCall receives each call a browser places; the framework starts a
	// call for it (the leg has framework.Signaling's shape).
	OnCall func(*Leg)
	// Pacer ticks the browser legs' streams; MediaTimeout hangs up a leg
	// that receives no RTP for that long (zero: 30 s; negative: never).
	Pacer        *media.Pacer
	MediaTimeout time.Duration
	// Heartbeat is how often the server pings each WebSocket; a socket
	// silent for three heartbeats is closed. Default 15 s.
	Heartbeat time.Duration
	// HelloTimeout bounds how long a socket may stay without a valid
	// hello. Default 10 s.
	HelloTimeout time.Duration
	// Grace is how long a browser's calls outlive its socket: a new socket
	// logged in as the same user may resume them (media never stopped)
	// within it. Default 20 s; negative ends them with the socket.
	Grace time.Duration
	// Control, if set, carries what a browser does to its own call that
	// the call's owner must hear of: "mute"/"unmute" (the page muted its
	// microphone), and "signal" with a name and a JSON payload.
	Control func(legID, op, name string, payload json.RawMessage)
	// Presence, if set, is told how many sockets a user has logged in
	// (0 when the last one closes) and takes a browser's own status
	// ("available", "away" with a note; an error refuses it).
	Online   func(user string, sockets int)
	SetState func(user, status, note string) error
	// Roster, if set, lists every user's presence as `presence` messages,
	// sent to a browser when it logs in (Broadcast sends the changes).
	Roster func() []Message
	// Feeds, if set, gives browsers session events: those of the session
	// each browser call is in (following it when it moves), and of the
	// sessions a browser watches.
	Feeds  Feeds
	Logger *slog.Logger
}

// Bridge serves browsers: the WebSocket endpoint and their WebRTC legs.
type Bridge struct {
	cfg  Config
	api  *webrtc.API
	mux  ice.UDPMux
	conn net.PacketConn
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[*session]struct{}
	legs     map[string]*Leg      // every live browser leg, for resume
	ringing  map[string]*incoming // calls offered to browsers, by id
	closed   bool
	opus     bool // Opus is in the media engine

	badMu      sync.Mutex
	badLast    time.Time // when badInput last logged
	badDropped int       // lines suppressed since
}

// badInput logs bad input from a browser at Info, at most one line a
// second for the whole bridge (the next line counts those left out).
func (b *Bridge) badInput(msg string, args ...any) {
	b.badMu.Lock()
	now := time.Now()
	if now.Sub(b.badLast) < time.Second {
		b.badDropped++
		b.badMu.Unlock()
		return
	}
	dropped := b.badDropped
	b.badLast, b.badDropped = now, 0
	b.badMu.Unlock()
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	b.log.Info(msg, args...)
}

// New starts a bridge: it binds the shared ICE UDP port.
func New(cfg Config) (*Bridge, error) {
	if cfg.Tokens == nil {
		return nil, errors.New("bridge: Config.Tokens is required")
	}
	if cfg.ICEAddr == "" {
		cfg.ICEAddr = "0.0.0.0:0"
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.MediaTimeout == 0 {
		cfg.MediaTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	conn, err := net.ListenPacket("udp", cfg.ICEAddr)
	if err != nil {
		return nil, fmt.Errorf("bridge: ICE port: %w", err)
	}
	if cfg.Grace == 0 {
		cfg.Grace = 20 * time.Second
	}
	b := &Bridge{cfg: cfg, conn: conn, log: log.With("component", "bridge"), sessions: map[*session]struct{}{}, legs: map[string]*Leg{}, ringing: map[string]*incoming{}}
	_, b.opus = codec.LookupCodec("opus", 48000)
	b.mux = webrtc.NewICEUDPMux(nil, conn)
	me := &webrtc.MediaEngine{}
	if err := registerCodecs(me); err != nil {
		conn.Close()
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetICEUDPMux(b.mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil && ap.Addr().IsLoopback() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	b.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	return b, nil
}

// registerCodecs offers Opus (when libopus is there), then PCMU and PCMA,
// and telephone-event at both clocks.
func registerCodecs(me *webrtc.MediaEngine) error {
	type entry struct {
		mime    string
		rate    uint32
		ch      uint16
		fmtp    string
		pt      webrtc.PayloadType
		enabled bool
	}
	_, opusOK := codec.LookupCodec("opus", 48000)
	list := []entry{
		{webrtc.MimeTypeOpus, 48000, 2, "minptime=10;useinbandfec=1", 111, opusOK},
		{webrtc.MimeTypePCMU, 8000, 0, "", 0, true},
		{webrtc.MimeTypePCMA, 8000, 0, "", 8, true},
		{"audio/telephone-event", 48000, 0, "0-16", 110, opusOK},
		{"audio/telephone-event", 8000, 0, "0-16", 101, true},
	}
	for _, c := range list {
		if !c.enabled {
			continue
		}
		err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType: c.mime, ClockRate: c.rate, Channels: c.ch, SDPFmtpLine: c.fmtp}, PayloadType: c.pt}, webrtc.RTPCodecTypeAudio)
		if err != nil {
			return fmt.Errorf("bridge: codec %s: %w", c.mime, err)
		}
	}
	return nil
}

// Broadcast sends m to every logged-in browser (presence changes).
func (b *Bridge) Broadcast(m Message) {
	b.mu.Lock()
	var ss []*session
	for s := range b.sessions {
		if s.claims.User != "" {
			ss = append(ss, s)
		}
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.send(m)
	}
}

// sockets counts the logged-in sockets of user, but except.
func (b *Bridge) sockets(user string, except *session) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for s := range b.sessions {
		if s.claims.User == user && s != except {
			n++
		}
	}
	return n
}

func (b *Bridge) remember(l *Leg) {
	b.mu.Lock()
	b.legs[l.id] = l
	b.mu.Unlock()
}

func (b *Bridge) forget(id string) {
	b.mu.Lock()
	delete(b.legs, id)
	b.mu.Unlock()
}

func (b *Bridge) leg(id string) *Leg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.legs[id]
}

// ICEAddr is the UDP address the browsers' media arrives at.
func (b *Bridge) ICEAddr() net.Addr { return b.conn.LocalAddr() }

// Close ends every browser call and socket and releases the ICE port.
func (b *Bridge) Close() error {
	b.mu.Lock()
	b.closed = true
	var ss []*session
	for s := range b.sessions {
		ss = append(ss, s)
	}
	b.mu.Unlock()
	for _, s := range ss {
		s.close("server shutdown")
	}
	b.mu.Lock()
	var legs []*Leg
	for _, l := range b.legs {
		legs = append(legs, l)
	}
	b.mu.Unlock()
	for _, l := range legs {
		l.end(ErrGone)
	}
	_ = b.mux.Close()
	return b.conn.Close()
}

// checkOrigin allows a request without Origin (not a browser), one from
// the page's own host, and the configured ones.
func (b *Bridge) checkOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.Contains(b.cfg.AllowedOrigins, "*") || slices.ContainsFunc(b.cfg.AllowedOrigins, func(a string) bool {
		return strings.EqualFold(strings.TrimSuffix(a, "/"), o)
	})
}

func newID(prefix string) string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
