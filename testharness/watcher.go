package testharness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Watcher is a virtual busy-lamp field: a SIP user agent that subscribes
// to event packages (presence, dialog) and records every NOTIFY it gets.
type Watcher struct {
	ua     *sipgo.UserAgent
	client *sipgo.Client
	srv    *sipgo.Server
	conn   net.PacketConn
	addr   netip.AddrPort

	notifies chan Notify
}

// Notify is one NOTIFY a Watcher received (and answered 200).
type Notify struct {
	Event, SubscriptionState, ContentType, Body string
	CallID                                      string
	CSeq                                        uint32
}

// NewWatcher starts a watcher on a free UDP port of 127.0.0.1.
func NewWatcher() (*Watcher, error) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("Switchboard-watcher"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		conn.Close()
		return nil, err
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		conn.Close()
		return nil, err
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(int(addr.Port())))
	if err != nil {
		conn.Close()
		return nil, err
	}
	w := &Watcher{ua: ua, client: client, srv: srv, conn: conn, addr: addr, notifies: make(chan Notify, 64)}
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		n := Notify{Body: string(req.Body()), CallID: req.CallID().Value(), CSeq: req.CSeq().SeqNo}
		if h := req.GetHeader("Event"); h != nil {
			n.Event = h.Value()
		}
		if h := req.GetHeader("Subscription-State"); h != nil {
			n.SubscriptionState = h.Value()
		}
		if h := req.ContentType(); h != nil {
			n.ContentType = h.Value()
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		select {
		case w.notifies <- n:
		default:
		}
	})
	go func() { _ = srv.ServeUDP(conn) }()
	return w, nil
}

// Close stops the watcher.
func (w *Watcher) Close() {
	_ = w.ua.Close()
	_ = w.conn.Close()
}

// Next returns the next NOTIFY, or ctx's error.
func (w *Watcher) Next(ctx context.Context) (Notify, error) {
	select {
	case n := <-w.notifies:
		return n, nil
	case <-ctx.Done():
		return Notify{}, ctx.Err()
	}
}

// WaitFor returns the first NOTIFY for which cond holds, skipping others.
func (w *Watcher) WaitFor(ctx context.Context, cond func(Notify) bool) (Notify, error) {
	for {
		n, err := w.Next(ctx)
		if err != nil {
			return n, err
		}
		if cond(n) {
			return n, nil
		}
	}
}

// WatchOptions describe one SUBSCRIBE.
type WatchOptions struct {
	Event              string // "presence", "dialog", ...
	Expires            int    // seconds; negative leaves the header out
	Username, Password string // answer a digest challenge as this user (also the From user)
	Accept             string // Accept header, if set
}

// Subscription is a SUBSCRIBE dialog of a Watcher.
type Subscription struct {
	w      *Watcher
	server netip.AddrPort
	req    *sip.Request
	opts   WatchOptions
	mu     sync.Mutex
	toTag  string
}

// Subscribe sends SUBSCRIBE for target (a user at server) and returns the
// final status; with a 2xx the subscription can be refreshed or ended.
func (w *Watcher) Subscribe(ctx context.Context, server netip.AddrPort, target string, opts WatchOptions) (*Subscription, int, error) {
	uri := sip.Uri{Scheme: "sip", User: target, Host: server.Addr().String(), Port: int(server.Port())}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	fromUser := opts.Username
	if fromUser == "" {
		fromUser = "watcher"
	}
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: fromUser, Host: server.Addr().String()}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(12))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: target, Host: server.Addr().String()}, Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: fromUser, Host: w.addr.Addr().String(), Port: int(w.addr.Port())}})
	req.AppendHeader(sip.NewHeader("Event", opts.Event))
	if opts.Expires >= 0 {
		req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(opts.Expires)))
	}
	if opts.Accept != "" {
		req.AppendHeader(sip.NewHeader("Accept", opts.Accept))
	}
	req.SetDestination(server.String())
	s := &Subscription{w: w, server: server, req: req, opts: opts}
	res, err := s.do(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	if res.IsSuccess() {
		s.toTag, _ = res.To().Params.Get("tag")
	}
	return s, res.StatusCode, nil
}

func (s *Subscription) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, err := s.w.client.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("watcher: %s: %w", req.Method, err)
	}
	if (res.StatusCode == 401 || res.StatusCode == 407) && s.opts.Password != "" {
		res, err = s.w.client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: s.opts.Username, Password: s.opts.Password})
		if err != nil {
			return nil, fmt.Errorf("watcher: %s with credentials: %w", req.Method, err)
		}
	}
	return res, nil
}

// Refresh re-subscribes inside the dialog with a new Expires (0 ends the
// subscription) and returns the status.
func (s *Subscription) Refresh(ctx context.Context, expires int) (int, error) {
	s.mu.Lock()
	req := s.req.Clone()
	s.mu.Unlock()
	req.RemoveHeader("Via")
	req.To().Params.Add("tag", s.toTag)
	req.CSeq().SeqNo += 10 // past any digest retry
	req.ReplaceHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.RemoveHeader("Proxy-Authorization")
	s.mu.Lock()
	s.req.CSeq().SeqNo = req.CSeq().SeqNo
	s.mu.Unlock()
	res, err := s.do(ctx, req)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// StateOf returns the state of the first dialog in a dialog-info body, or
// "" when it lists none.
func StateOf(dialogInfo string) string {
	_, rest, ok := strings.Cut(dialogInfo, "<state>")
	if !ok {
		return ""
	}
	st, _, _ := strings.Cut(rest, "</state>")
	return st
}
