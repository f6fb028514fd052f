package testharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/pion/webrtc/v4"
	"github.com/switchboard-voice/switchboard/bridge"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// Browser is a virtual browser: it logs in on the server's /ws with a
// token and places and takes WebRTC calls (pion), with no Chromium. Its
// calls are PhoneCalls — they record what they hear, play tones, send
// digits — so tests and the load generator drive browser legs like
// phones. Cost: one WebSocket and, per call, one peer connection.
type Browser struct {
	conn net.Conn
	api  *webrtc.API
	user string
	wmu  sync.Mutex

	mu       sync.Mutex
	waiting  map[string]chan bridge.Message // replies by request id
	calls    map[string]*browserCall
	incoming chan *PhoneCall
	closed   bool
	done     chan struct{}
	nextID   int
	// feed is every session-event message (event, moved, unwatched) in
	// the order it came; fed is closed and replaced at each one.
	feed []bridge.Message
	fed  chan struct{}
	// dropped: the socket was cut (Drop); the calls' media goes on.
	dropped bool
}

// NewBrowser connects to ws://httpAddr/ws and logs in with token.
func NewBrowser(ctx context.Context, httpAddr, token string) (*Browser, error) {
	return DialBrowser(ctx, "ws://"+httpAddr+"/ws", token)
}

// DialBrowser connects to the server's WebSocket at wsURL
// (ws://host:port/ws or wss://...) and logs in with token.
func DialBrowser(ctx context.Context, wsURL, token string) (*Browser, error) {
	b, err := connectBrowser(ctx, wsURL)
	if err != nil {
		return nil, err
	}
	if err := b.login(ctx, token); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// errBrowserClosed is a request cut short by the WebSocket closing.
var errBrowserClosed = errors.New("testharness: browser socket closed")

// loginError is the server refusing a browser's hello.
type loginError struct {
	code int
	why  string
}

func (e *loginError) Error() string {
	return fmt.Sprintf("testharness: browser login refused: %d %s", e.code, e.why)
}

// connectBrowser opens the WebSocket; login says hello on it.
func connectBrowser(ctx context.Context, wsURL string) (*Browser, error) {
	conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(ctx, wsURL)
	if err != nil {
		return nil, fmt.Errorf("testharness: browser: %w", err)
	}
	me := &webrtc.MediaEngine{}
	if _, ok := codec.LookupCodec("opus", 48000); ok {
		_ = me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opusCapability, PayloadType: 111}, webrtc.RTPCodecTypeAudio)
	}
	_ = me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: pcmuCapability, PayloadType: 0}, webrtc.RTPCodecTypeAudio)
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	b := &Browser{conn: conn, api: webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)),
		waiting: map[string]chan bridge.Message{}, calls: map[string]*browserCall{}, incoming: make(chan *PhoneCall, 8), done: make(chan struct{}),
		fed: make(chan struct{})}
	go b.read()
	return b, nil
}

func (b *Browser) login(ctx context.Context, token string) error {
	reply, err := b.request(ctx, bridge.Message{Type: "hello", Token: token})
	if err != nil {
		return err
	}
	if reply.Type != "welcome" {
		return &loginError{code: reply.Code, why: reply.Error}
	}
	b.user = reply.User
	return nil
}

var (
	opusCapability = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	pcmuCapability = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}
)

// User is who the browser logged in as.
func (b *Browser) User() string { return b.user }

// Incoming delivers calls the server rings this browser with, answered.
func (b *Browser) Incoming() <-chan *PhoneCall { return b.incoming }

// Close hangs up the browser's calls and closes its socket.
func (b *Browser) Close() {
	b.mu.Lock()
	if b.closed && !b.dropped {
		b.mu.Unlock()
		return
	}
	dropped := b.dropped
	b.closed, b.dropped = true, false
	calls := make([]*browserCall, 0, len(b.calls))
	for _, c := range b.calls {
		calls = append(calls, c)
	}
	b.mu.Unlock()
	for _, c := range calls {
		if dropped { // no socket to say it on
			c.end(errors.New("browser closed"))
			continue
		}
		_ = c.Hangup(context.Background())
	}
	_ = b.conn.Close()
	<-b.done
}

func (b *Browser) send(m bridge.Message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.SendRaw(data)
}

// socketWriter writes to the socket under the write lock, each write
// within 5 s (the pongs the server's pings get).
type socketWriter struct{ b *Browser }

func (w socketWriter) Write(p []byte) (int, error) {
	w.b.wmu.Lock()
	defer w.b.wmu.Unlock()
	_ = w.b.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer w.b.conn.SetWriteDeadline(time.Time{})
	return w.b.conn.Write(p)
}

// readText returns the next text message, answering pings (under the
// write lock: a pong never interleaves with a message being sent).
func (b *Browser) readText() ([]byte, error) {
	ctl := wsutil.ControlFrameHandler(socketWriter{b}, ws.StateClientSide)
	rd := wsutil.Reader{Source: b.conn, State: ws.StateClientSide, CheckUTF8: true, OnIntermediate: ctl}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return nil, err
		}
		if hdr.OpCode.IsControl() {
			if err := ctl(hdr, &rd); err != nil {
				return nil, err
			}
			continue
		}
		if hdr.OpCode&ws.OpText == 0 {
			if err := rd.Discard(); err != nil {
				return nil, err
			}
			continue
		}
		return io.ReadAll(&rd)
	}
}

// request sends m with a fresh id and waits for the reply that echoes it.
func (b *Browser) request(ctx context.Context, m bridge.Message) (bridge.Message, error) {
	b.mu.Lock()
	b.nextID++
	m.ID = fmt.Sprint(b.nextID)
	ch := make(chan bridge.Message, 1)
	b.waiting[m.ID] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, m.ID)
		b.mu.Unlock()
	}()
	if err := b.send(m); err != nil {
		return bridge.Message{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-b.done:
		return bridge.Message{}, errBrowserClosed
	case <-ctx.Done():
		return bridge.Message{}, ctx.Err()
	}
}

// read dispatches what the server sends until the socket closes.
func (b *Browser) read() {
	defer close(b.done)
	for {
		data, err := b.readText()
		if err != nil {
			b.mu.Lock()
			if b.dropped {
				b.mu.Unlock()
				return // the calls' media goes on (Drop); Close ends them
			}
			calls := b.calls
			b.calls = map[string]*browserCall{}
			b.mu.Unlock()
			for _, c := range calls {
				c.end(errors.New("browser socket closed"))
			}
			return
		}
		var m bridge.Message
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		if ch == nil && m.Type == "error" && m.Code >= 4000 { // the socket is being closed: tell whoever waits
			for _, w := range b.waiting {
				ch = w
			}
		}
		c := b.calls[m.Call]
		if m.Type == "event" || m.Type == "moved" || m.Type == "unwatched" {
			b.feed = append(b.feed, m)
			close(b.fed)
			b.fed = make(chan struct{})
		}
		b.mu.Unlock()
		switch {
		case m.Type == "incoming":
			go b.answerIncoming(m)
		case ch != nil && (m.Type == "welcome" || m.Type == "answer" || m.Type == "error" || m.Type == "watching" ||
			m.Type == "unwatched" || m.Type == "resumed" || m.Type == "pong"):
			select {
			case ch <- m:
			default:
			}
		case c != nil && m.Type == "ice" && m.Candidate != nil:
			_ = c.pc.AddICECandidate(*m.Candidate)
		case c != nil && m.Type == "hangup":
			c.end(fmt.Errorf("remote hangup: %s", m.Cause))
		case c != nil && m.Type == "chat":
			c.chat(m.Text)
		case c != nil && m.Type == "event":
			c.addEvent(m)
		}
	}
}

// browserCall is one call of a Browser: the far end of a PhoneCall.
type browserCall struct {
	b     *Browser
	id    string
	pc    *webrtc.PeerConnection
	track *webrtc.TrackLocalStaticRTP
	ep    *media.Endpoint

	mu     sync.Mutex
	err    error
	done   chan struct{}
	onChat func(contentType, text string)
	events []bridge.Message

	// iceUp closes when ICE connects, connected when DTLS is up too (the
	// peer connection is connected), failed when either fails; firstRTP
	// is when the first RTP packet came (Unix ns, 0: none yet). For the
	// load generator's set-up latency and failure reasons.
	iceUp, connected, failed chan struct{}
	iceOnce, connOnce        sync.Once
	failOnce                 sync.Once
	firstRTP                 atomic.Int64
	// sent and replied are when the "call" request went and its reply
	// came (a call this browser placed).
	sent, replied time.Time
	impair        *browserImpair // nil: the RTP is not impaired
}

func (b *Browser) newCall() (*browserCall, *webrtc.RTPTransceiver, error) {
	pc, err := b.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	capability := pcmuCapability
	if _, ok := codec.LookupCodec("opus", 48000); ok {
		capability = opusCapability
	}
	track, err := webrtc.NewTrackLocalStaticRTP(capability, "audio", "harness")
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	c := &browserCall{b: b, pc: pc, track: track, done: make(chan struct{}),
		iceUp: make(chan struct{}), connected: make(chan struct{}), failed: make(chan struct{})}
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		switch s {
		case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
			c.iceOnce.Do(func() { close(c.iceUp) })
		case webrtc.ICEConnectionStateFailed:
			c.failOnce.Do(func() { close(c.failed) })
		}
	})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			c.connOnce.Do(func() { close(c.connected) })
		case webrtc.PeerConnectionStateFailed:
			c.failOnce.Do(func() { close(c.failed) })
		}
	})
	return c, tr, nil
}

// Call calls to (a route or user) and returns once the server answered
// the offer; media flows as soon as ICE and DTLS are up.
func (b *Browser) Call(ctx context.Context, to string) (*PhoneCall, error) {
	c, err := b.call(ctx, to, Impairment{}, Impairment{})
	if err != nil {
		return nil, err
	}
	return attach(c), nil
}

// callError is the server refusing a browser's call.
type callError struct {
	to   string
	code int
	why  string
}

func (e *callError) Error() string {
	return fmt.Sprintf("testharness: browser call %s: %d %s", e.to, e.code, e.why)
}

// call places a call to to; up and down, when not zero, impair its RTP
// inside the browser (see browserImpair).
func (b *Browser) call(ctx context.Context, to string, up, down Impairment) (*browserCall, error) {
	c, tr, err := b.newCall()
	if err != nil {
		return nil, err
	}
	offer, err := c.pc.CreateOffer(nil)
	if err == nil {
		err = c.pc.SetLocalDescription(offer)
	}
	if err != nil {
		_ = c.pc.Close()
		return nil, err
	}
	select {
	case <-webrtc.GatheringCompletePromise(c.pc):
	case <-time.After(time.Second):
	}
	c.sent = time.Now()
	reply, err := b.request(ctx, bridge.Message{Type: "call", To: to, SDP: c.pc.LocalDescription().SDP})
	c.replied = time.Now()
	if err == nil && reply.Type != "answer" {
		err = &callError{to: to, code: reply.Code, why: reply.Error}
	}
	if err == nil {
		c.id = reply.Call
		err = c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: reply.SDP})
	}
	if err == nil {
		err = c.start(tr, up, down)
	}
	if err != nil {
		_ = c.pc.Close()
		return nil, err
	}
	return c, nil
}

// answerIncoming takes a call the server offers this browser.
func (b *Browser) answerIncoming(m bridge.Message) {
	c, tr, err := b.newCall()
	if err != nil {
		return
	}
	c.id = m.Call
	err = c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP})
	var answer webrtc.SessionDescription
	if err == nil {
		answer, err = c.pc.CreateAnswer(nil)
	}
	if err == nil {
		err = c.pc.SetLocalDescription(answer)
	}
	if err == nil {
		select {
		case <-webrtc.GatheringCompletePromise(c.pc):
		case <-time.After(time.Second):
		}
		err = c.start(tr, Impairment{}, Impairment{})
	}
	if err != nil {
		_ = c.pc.Close()
		_ = b.send(bridge.Message{Type: "reject", Call: m.Call})
		return
	}
	_ = b.send(bridge.Message{Type: "answer", Call: m.Call, SDP: c.pc.LocalDescription().SDP})
	select {
	case b.incoming <- attach(c):
	default:
		_ = c.Hangup(context.Background())
	}
}

// start makes the call's stream for the negotiated codec and registers
// the call with its browser.
func (c *browserCall) start(tr *webrtc.RTPTransceiver, up, down Impairment) error {
	codecs := tr.Sender().GetParameters().Codecs
	if len(codecs) == 0 || codecs[0].MimeType != c.track.Codec().MimeType {
		return errors.New("testharness: browser: the server did not take our codec")
	}
	audio := codecs[0]
	spec, ok := codec.LookupCodec("opus", 48000)
	if audio.MimeType == webrtc.MimeTypePCMU {
		spec, ok = codec.LookupCodec("PCMU", 8000)
	}
	if !ok {
		return errors.New("testharness: browser: no codec")
	}
	transport := browserTransport{track: c.track}
	if up != (Impairment{}) || down != (Impairment{}) {
		c.impair = newBrowserImpair(up, down, func(b []byte) { _, _ = c.track.Write(b) }, func(b []byte) { c.ep.ReceivePacket(b) })
		transport.up = c.impair.dirs[Uplink]
	}
	c.ep = media.NewPacketEndpoint(transport, media.EndpointOptions{MediaTimeout: -1})
	c.ep.Configure(media.StreamConfig{Codec: spec, PayloadType: uint8(audio.PayloadType)})
	c.pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		go func() {
			buf := make([]byte, 1500)
			for {
				n, _, err := remote.Read(buf)
				if err != nil {
					return
				}
				if c.firstRTP.Load() == 0 {
					c.firstRTP.Store(time.Now().UnixNano())
				}
				if c.impair != nil {
					c.impair.dirs[Downlink].arrive(buf[:n], time.Now())
					continue
				}
				c.ep.ReceivePacket(buf[:n])
			}
		}()
	})
	c.ep.Start()
	c.b.mu.Lock()
	c.b.calls[c.id] = c
	c.b.mu.Unlock()
	return nil
}

// browserTransport writes the stream's RTP into the browser's track,
// through the uplink impairment when there is one.
type browserTransport struct {
	track *webrtc.TrackLocalStaticRTP
	up    *linkDir
}

func (t browserTransport) WriteRTP(pkt []byte) error {
	if t.up != nil {
		t.up.arrive(pkt, time.Now()) // copies pkt
		return nil
	}
	_, err := t.track.Write(pkt)
	return err
}

// browserImpair impairs a browser call's RTP inside the virtual browser,
// between its stream and its peer connection — above SRTP, so unlike on
// a real network a duplicate is not dropped by SRTP replay protection —
// with the same seeded model, one direction each, as a Link applies to a
// SIP call's UDP. Cost: two scheduler goroutines and a copy per packet.
type browserImpair struct {
	dirs [2]*linkDir
	wg   sync.WaitGroup
	done chan struct{}
	once sync.Once
}

func newBrowserImpair(up, down Impairment, send, receive func([]byte)) *browserImpair {
	im := &browserImpair{done: make(chan struct{})}
	im.dirs[Uplink] = newLinkDir(up, 0x75706c696e6b, send)
	im.dirs[Downlink] = newLinkDir(down, 0x646f776e6c696e6b, receive)
	im.wg.Add(2)
	go im.dirs[Uplink].run(&im.wg, im.done)
	go im.dirs[Downlink].run(&im.wg, im.done)
	return im
}

func (im *browserImpair) close() {
	im.once.Do(func() {
		close(im.done)
		im.wg.Wait()
	})
}
func (browserTransport) WriteRTCP([]byte) error { return nil }

func (c *browserCall) Endpoint() *media.Endpoint { return c.ep }
func (c *browserCall) Done() <-chan struct{}     { return c.done }

func (c *browserCall) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Hangup ends the call from the browser.
func (c *browserCall) Hangup(ctx context.Context) error {
	_ = c.b.send(bridge.Message{Type: "hangup", Call: c.id})
	c.end(errors.New("local hangup"))
	return nil
}

func (c *browserCall) OnChat(fn func(contentType, text string)) {
	c.mu.Lock()
	c.onChat = fn
	c.mu.Unlock()
}

func (c *browserCall) chat(text string) {
	c.mu.Lock()
	fn := c.onChat
	c.mu.Unlock()
	if fn != nil {
		fn("text/plain", text)
	}
}

func (c *browserCall) addEvent(m bridge.Message) {
	c.mu.Lock()
	c.events = append(c.events, m)
	c.mu.Unlock()
}

func (c *browserCall) end(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	c.mu.Unlock()
	c.b.mu.Lock()
	delete(c.b.calls, c.id)
	c.b.mu.Unlock()
	if c.ep != nil {
		_ = c.ep.Close()
	}
	_ = c.pc.Close()
	if c.impair != nil {
		c.impair.close()
	}
	close(c.done)
}

// Send sends m about pc's call (m.Call is filled in): "mute", "unmute",
// "hold", "unhold", "signal" (Text the name, Event the JSON payload),
// "dtmf", "chat" — what the page's buttons send.
func (b *Browser) Send(pc *PhoneCall, m bridge.Message) error {
	if c, ok := pc.far.(*browserCall); ok {
		m.Call = c.id
	}
	return b.send(m)
}

// SetPresence sets the browser user's own presence ("available",
// "away", ...) with a note.
func (b *Browser) SetPresence(status, note string) error {
	return b.send(bridge.Message{Type: "presence", Status: status, Text: note})
}

// RestartICE renegotiates pc's call with new ICE credentials, as a
// browser does after a network change; audio should go on.
func (b *Browser) RestartICE(ctx context.Context, pc *PhoneCall) error {
	c, ok := pc.far.(*browserCall)
	if !ok {
		return errors.New("testharness: not a browser call")
	}
	offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err == nil {
		err = c.pc.SetLocalDescription(offer)
	}
	if err != nil {
		return err
	}
	select {
	case <-webrtc.GatheringCompletePromise(c.pc):
	case <-time.After(time.Second):
	}
	reply, err := b.request(ctx, bridge.Message{Type: "offer", Call: c.id, SDP: c.pc.LocalDescription().SDP})
	if err != nil {
		return err
	}
	if reply.Type != "answer" {
		return fmt.Errorf("testharness: ICE restart: %d %s", reply.Code, reply.Error)
	}
	return c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: reply.SDP})
}

// Feed returns the session-event messages the browser received so far —
// `event` (its calls' and watched sessions'), `moved` and `unwatched` —
// in the order they came.
func (b *Browser) Feed() []bridge.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bridge.Message(nil), b.feed...)
}

// WaitFeed waits until cond holds for Feed (checked at each new message)
// or ctx ends, and returns the feed it held for.
func (b *Browser) WaitFeed(ctx context.Context, what string, cond func([]bridge.Message) bool) ([]bridge.Message, error) {
	for {
		b.mu.Lock()
		feed := append([]bridge.Message(nil), b.feed...)
		fed := b.fed
		b.mu.Unlock()
		if cond(feed) {
			return feed, nil
		}
		select {
		case <-fed:
		case <-b.done:
			return feed, fmt.Errorf("testharness: waiting for %s: %w", what, errBrowserClosed)
		case <-ctx.Done():
			return feed, fmt.Errorf("testharness: waiting for %s: %w (feed: %d messages)", what, ctx.Err(), len(feed))
		}
	}
}

// Watch asks for a session's events (after Seq seq) and returns the
// reply: `watching`, or an `error` with its code.
func (b *Browser) Watch(ctx context.Context, session string, seq uint64) (bridge.Message, error) {
	return b.request(ctx, bridge.Message{Type: "watch", Session: session, Seq: seq})
}

// Unwatch stops watching a session and returns the reply.
func (b *Browser) Unwatch(ctx context.Context, session string) (bridge.Message, error) {
	return b.request(ctx, bridge.Message{Type: "unwatch", Session: session})
}

// SendRaw sends one text frame as it is (hostile-input tests).
func (b *Browser) SendRaw(data []byte) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer b.conn.SetWriteDeadline(time.Time{}) // a later pong must not find it passed
	return wsutil.WriteClientText(b.conn, data)
}

// Ping sends a ping and waits for its pong: the socket is up.
func (b *Browser) Ping(ctx context.Context) error {
	b.mu.Lock()
	b.nextID++
	id := fmt.Sprint("ping-", b.nextID)
	ch := make(chan bridge.Message, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
	}()
	if err := b.send(bridge.Message{Type: "ping", ID: id}); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-b.done:
		return errBrowserClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Resume takes over, on this socket, a call another socket of the same
// user placed and dropped (Drop): events of session after Seq seq follow
// (session "" for the call's own). It returns the reply: `resumed` or an
// `error`.
func (b *Browser) Resume(ctx context.Context, callID, session string, seq uint64) (bridge.Message, error) {
	return b.request(ctx, bridge.Message{Type: "resume", Call: callID, Session: session, Seq: seq})
}

// Drop cuts the socket as a network failure would, without hanging up:
// the calls' media goes on, and another Browser may Resume them.
func (b *Browser) Drop() {
	b.mu.Lock()
	b.dropped, b.closed = true, true
	b.mu.Unlock()
	_ = b.conn.Close()
	<-b.done
}

// CallID is the server's ID of a browser's call (its leg's and, for a
// call the browser placed, the call's); "" for other calls.
func CallID(pc *PhoneCall) string {
	if c, ok := pc.far.(*browserCall); ok {
		return c.id
	}
	return ""
}
