package sip

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An initial INVITE over UDP gets a server transaction of ours rather
// than sipgo's: the read loop (lint.go) matches the datagram and starts
// inviteTx, and onInvite gets it as its sip.ServerTransaction, through
// which sipgo's DialogServerSession answers. It is RFC 3261 17.2.1 with
// RFC 6026's change: a 100 Trying if nothing was sent within 200 ms, the
// last provisional or error response sent again to a retransmitted
// INVITE, an error response retransmitted (Timer G) until its ACK or for
// 64*T1 (Timer H), CANCEL answered 200 and the INVITE 487, and a 2xx
// that ends the transaction's part (its retransmissions are the
// dialog's, Leg.Answer's; retransmitted INVITEs are absorbed).
//
// Through sipgo every call paid for a key built as a string, a context
// with a 10 s timer, a connection look-up, the FSM with Timer L and its
// unexported fields (stopTimerL), a 1xx timer and a goroutine per
// request; here it is a map entry, one timer, and the goroutine that
// runs onInvite. Re-INVITEs, and INVITEs over TCP, TLS and WebSocket,
// stay sipgo's.
type inviteTx struct {
	a    *Agent
	key  string
	req  *sip.Request
	conn net.PacketConn
	dst  net.Addr

	done chan struct{}
	acks chan *sip.Request // the ACK of an error response (buffered: one)

	mu       sync.Mutex
	status   int         // the last response's status; 0 before any
	last     []byte      // the last provisional or error response, as sent: resent to a retransmitted INVITE
	timer    *time.Timer // the 100 Trying while nothing is sent, then Timer G/H after an error response
	g        time.Duration
	giveUp   time.Time // Timer H
	err      error
	closed   bool
	onCancel []sip.FnTxCancel
	onTerm   []sip.FnTxTerminate
}

// errFinalSent: the transaction has sent its final response already.
var errFinalSent = errors.New("sip: INVITE transaction already has a final response")

func newInviteTx(a *Agent, key string, req *sip.Request, conn net.PacketConn, dst net.Addr) *inviteTx {
	tx := &inviteTx{a: a, key: key, req: req, conn: conn, dst: dst,
		done: make(chan struct{}), acks: make(chan *sip.Request, 1)}
	tx.mu.Lock()
	tx.timer = time.AfterFunc(sip.Timer_1xx, tx.trying)
	tx.mu.Unlock()
	return tx
}

// Key is the transaction's key (txKey, txMemory).
func (tx *inviteTx) Key() string { return tx.key }

func (tx *inviteTx) Done() <-chan struct{}     { return tx.done }
func (tx *inviteTx) Acks() <-chan *sip.Request { return tx.acks }
func (tx *inviteTx) Terminate()                { tx.end(sip.ErrTransactionTerminated) }
func (tx *inviteTx) OnCancel(f sip.FnTxCancel) bool {
	return tx.register(func() { tx.onCancel = append(tx.onCancel, f) })
}
func (tx *inviteTx) OnTerminate(f sip.FnTxTerminate) bool {
	return tx.register(func() { tx.onTerm = append(tx.onTerm, f) })
}

// register runs add under the lock unless the transaction has ended.
func (tx *inviteTx) register(add func()) bool {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.closed || tx.err != nil {
		return false
	}
	add()
	return true
}

// Err is why the transaction ended (canceled, terminated, timed out);
// nil while it runs.
func (tx *inviteTx) Err() error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	return tx.err
}

// Respond sends res. A 2xx may be sent again after the transaction has
// ended: those are the dialog's retransmissions (RFC 6026). Every write
// of the transaction happens under its lock, so that they leave in the
// order of their statuses: a 100 or a 180 copy racing a 200 must not
// arrive after it.
func (tx *inviteTx) Respond(res *sip.Response) error {
	_, err := tx.respond(res)
	return err
}

// respond is Respond that also reports whether res was taken (a write
// error aside): false when a final response went before, when a 100
// comes after another response, or when the transaction has ended.
func (tx *inviteTx) respond(res *sip.Response) (taken bool, err error) {
	code := res.StatusCode
	b := wireBytes(res)
	defer b.free()
	tx.mu.Lock()
	defer tx.mu.Unlock()
	switch {
	case code >= 200 && code < 300:
		if tx.status >= 300 {
			return false, errFinalSent
		}
	case tx.closed:
		return false, tx.err
	case tx.status >= 200:
		return false, errFinalSent
	case code == 100 && tx.status != 0:
		return false, nil // something better went already
	}
	if tx.status == 0 || code >= 300 {
		tx.timer.Stop() // the 100 Trying; no Timer G runs before a final
	}
	tx.status = code
	switch {
	case code < 200:
		tx.last = append(tx.last[:0], b.Bytes()...)
	case code < 300:
		tx.last = nil // a retransmitted INVITE is absorbed from now on
	default:
		tx.last = append(tx.last[:0], b.Bytes()...)
		tx.g, tx.giveUp = sip.T1, time.Now().Add(64*sip.T1)
		tx.timer = time.AfterFunc(tx.g, tx.retransmit)
	}
	_, err = tx.conn.WriteTo(b.Bytes(), tx.dst)
	return true, err
}

// trying sends a 100 when the INVITE has had no response for 200 ms
// (respond drops it if one went meanwhile).
func (tx *inviteTx) trying() {
	_ = tx.Respond(sip.NewResponseFromRequest(tx.req, 100, "Trying", nil))
}

// retransmit is Timer G: the error response again, at T1 doubling to
// T2, until its ACK; Timer H (64*T1) ends the transaction.
func (tx *inviteTx) retransmit() {
	tx.mu.Lock()
	if tx.closed || tx.status < 300 {
		tx.mu.Unlock()
		return
	}
	if !time.Now().Before(tx.giveUp) {
		tx.mu.Unlock()
		tx.end(sip.ErrTransactionTimeout)
		return
	}
	tx.g = min(2*tx.g, sip.T2)
	tx.timer.Reset(tx.g)
	_, _ = tx.conn.WriteTo(tx.last, tx.dst)
	tx.mu.Unlock()
}

// retransmitted answers a retransmission of the INVITE: the last
// provisional or error response again; nothing after a 2xx.
func (tx *inviteTx) retransmitted() {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.last != nil {
		_, _ = tx.conn.WriteTo(tx.last, tx.dst)
	}
}

// cancel runs a CANCEL that matched the transaction (its 200 is sent):
// before a final response the INVITE gets 487 and the OnCancel callbacks
// run; after one it has no effect (RFC 3261 9.2).
func (tx *inviteTx) cancel(req *sip.Request) {
	// The 487 first, in one step with the check: a final response the
	// flow sends meanwhile is refused, and one that went before makes
	// the CANCEL a no-op.
	if taken, _ := tx.respond(sip.NewResponseFromRequest(tx.req, 487, "Request Terminated", nil)); !taken {
		return
	}
	tx.mu.Lock()
	tx.err = sip.ErrTransactionCanceled
	fns := tx.onCancel
	tx.mu.Unlock()
	for _, f := range fns {
		f(req)
	}
}

// ack takes the ACK of an error response: the retransmissions stop and
// the transaction ends (its copies are absorbed from txMemory). It
// reports false when no error response awaits an ACK.
func (tx *inviteTx) ack(req *sip.Request) bool {
	tx.mu.Lock()
	waiting := !tx.closed && tx.status >= 300
	tx.mu.Unlock()
	if !waiting {
		return false
	}
	select {
	case tx.acks <- req:
	default:
	}
	tx.end(sip.ErrTransactionTerminated)
	return true
}

// handled is called when onInvite has returned: a transaction whose
// error response awaits its ACK runs on; any other ends (a 2xx was ACKed
// or given up on; without a final response none will come).
func (tx *inviteTx) handled() {
	tx.mu.Lock()
	waiting := tx.status >= 300
	tx.mu.Unlock()
	if !waiting {
		tx.Terminate()
	}
}

// end ends the transaction with err: out of the table, its key kept in
// txMemory so that a late copy of the INVITE or of an ACK is absorbed
// rather than taken for a new call, and the OnTerminate callbacks run.
func (tx *inviteTx) end(err error) {
	tx.mu.Lock()
	if tx.closed {
		tx.mu.Unlock()
		return
	}
	tx.closed = true
	if tx.err == nil {
		tx.err = err
	}
	err = tx.err
	tx.timer.Stop()
	fns := tx.onTerm
	tx.onTerm, tx.onCancel = nil, nil
	tx.mu.Unlock()
	close(tx.done)
	tx.a.invites.remove(tx)
	tx.a.txs.remember(tx.key, txAbsorb)
	for _, f := range fns {
		f(tx.key, err)
	}
}

// inviteTable holds the running inviteTxs by key.
type inviteTable struct {
	mu sync.Mutex
	m  map[string]*inviteTx
}

func (t *inviteTable) get(key []byte) *inviteTx {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[string(key)]
}

func (t *inviteTable) add(tx *inviteTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*inviteTx{}
	}
	t.m[tx.key] = tx
}

func (t *inviteTable) remove(tx *inviteTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[tx.key] == tx {
		delete(t.m, tx.key)
	}
}

// len is how many transactions run.
func (t *inviteTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// closeAll ends every transaction (the agent is closing).
func (t *inviteTable) closeAll() {
	t.mu.Lock()
	txs := make([]*inviteTx, 0, len(t.m))
	for _, tx := range t.m {
		txs = append(txs, tx)
	}
	t.mu.Unlock()
	for _, tx := range txs {
		tx.Terminate()
	}
}

// takeInvite runs the INVITE transactions of UDP in the read loop, from
// the lint pass's raw values, and reports whether it consumed the
// datagram: a new initial INVITE (parsed here, handed to onInvite on a
// goroutine), its retransmissions, its CANCEL, and the ACK of an error
// response. What it does not take goes the sipgo way: re-INVITEs, RFC
// 2543 peers (no magic cookie in the branch), a CANCEL or ACK that
// matches nothing of ours. It must not block.
func (a *Agent) takeInvite(info sip.TransportReadProps, conn net.PacketConn, data []byte, h *rawHead, peers *udpPeers) bool {
	var kind byte
	switch {
	case bytes.Equal(h.method, []byte("INVITE")) && len(h.toTag) == 0:
		kind = 'I'
	case bytes.Equal(h.method, []byte("CANCEL")):
		kind = 'C'
	case bytes.Equal(h.method, []byte("ACK")):
		kind = 'A'
	default:
		return false
	}
	branch := viaBranch(h.topVia)
	if branch == nil || info.RemoteAddr == nil {
		return false
	}
	var kb [192]byte
	key := appendInviteKey(kb[:0], branch, viaSentBy(h.topVia))
	tx := a.invites.get(key)
	switch kind {
	case 'A':
		if tx != nil {
			if req := a.parseRequest(info, data); req != nil && tx.ack(req) {
				return true
			}
			return false
		}
		// A copy of the ACK of an error response after the transaction
		// ended. (An ACK of a 2xx is a transaction of its own, with
		// another branch.)
		st, ok := a.txs.recallBytes(key)
		return ok && st == txAbsorb
	case 'C':
		if tx == nil {
			return false // onCancel: 481
		}
		req := a.parseRequest(info, data)
		if req == nil {
			return false
		}
		ok := wireBytes(sip.NewResponseFromRequest(req, 200, "OK", nil))
		if _, err := conn.WriteTo(ok.Bytes(), info.RemoteAddr); err != nil {
			a.log.Debug("sip: 200 to CANCEL not sent", "error", err)
		}
		ok.free()
		tx.cancel(req)
		return true
	}
	if tx != nil {
		tx.retransmitted()
		return true
	}
	if st, ok := a.txs.recallBytes(key); ok && st == txAbsorb {
		return true // a late copy of an INVITE whose transaction has ended
	}
	req := a.parseRequest(info, data)
	if req == nil {
		return false // sipgo's parser will say why
	}
	peers.note(a, req.Source())
	tx = newInviteTx(a, string(key), req, conn, info.RemoteAddr)
	a.invites.add(tx)
	a.readLoopInvites.Add(1)
	a.work.Go(func() {
		a.onInvite(req, tx)
		tx.handled()
	})
	return true
}

// udpPeers does for the requests the read loop takes what sipgo's UDP
// read loop does for those it parses: the sender's address goes into the
// transport's connection pool, mapped to the listening socket, so that
// requests to that peer later (a BYE of ours) leave from the listening
// port and not from a new socket. Like sipgo, it skips the pool when the
// sender is the one it noted last.
type udpPeers struct {
	listener sip.Connection
	last     string
}

func (p *udpPeers) note(a *Agent, src string) {
	if src == p.last {
		return
	}
	tl := a.ua.TransportLayer()
	if p.listener == nil {
		c, err := tl.GetConnection("udp", a.udpKey)
		if err != nil || c == nil {
			return
		}
		p.listener = c
	}
	if pool := tl.Pool("udp"); pool != nil {
		pool.Add(src, p.listener)
		p.last = src
	}
}

// parseRequest parses a request datagram as sipgo's UDP transport would
// (nil if it is not one).
func (a *Agent) parseRequest(info sip.TransportReadProps, data []byte) *sip.Request {
	msg, err := a.parser.ParseSIP(data)
	if err != nil {
		return nil
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil
	}
	req.SetTransport("UDP")
	req.SetSource(info.RemoteAddr.String())
	return req
}

// appendInviteKey appends an INVITE server transaction's key (RFC 3261
// 17.2.3: the top Via's branch and sent-by; CANCEL and ACK of an error
// response carry the INVITE's) to b. It starts with a NUL, which sipgo's
// keys and fastByeKey's never do.
func appendInviteKey(b, branch, sentBy []byte) []byte {
	b = append(b, "\x00inv\x00"...)
	b = append(b, branch...)
	b = append(b, 0)
	return append(b, sentBy...)
}

// viaSentBy returns the sent-by (host and port) of a Via header value:
// what follows the protocol, up to the parameters.
func viaSentBy(via []byte) []byte {
	if i := bytes.IndexByte(via, ','); i >= 0 {
		via = via[:i]
	}
	if i := bytes.IndexByte(via, ';'); i >= 0 {
		via = via[:i]
	}
	via = bytes.TrimSpace(via)
	if i := bytes.LastIndexAny(via, " \t"); i >= 0 {
		via = via[i+1:]
	}
	return via
}

// wireBuf is a response as it goes on the wire, in a pooled buffer.
type wireBuf struct{ *bytes.Buffer }

var wirePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// wireBytes writes res out.
func wireBytes(res *sip.Response) wireBuf {
	b := wirePool.Get().(*bytes.Buffer)
	b.Reset()
	res.StringWrite(b)
	return wireBuf{b}
}

// free gives the buffer back.
func (w wireBuf) free() {
	if w.Cap() <= 16<<10 {
		wirePool.Put(w.Buffer)
	}
}
