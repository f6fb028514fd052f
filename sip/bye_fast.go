package sip

import (
	"bytes"
	"errors"
	"net"

	"github.com/emiago/sipgo/sip"
)

// takeBye ends an answered, ACKed inbound call from its BYE in the UDP
// read loop, from the lint pass's raw header values, and reports whether
// it did (the datagram is then consumed). Every call that the caller
// hangs up has one; through sipgo it cost a full parse, a goroutine and a
// server transaction with its timers before onBye. The 200 is built from
// the BYE's own Via, From, To, Call-ID and CSeq (as the stateless 503
// is), and remembered, so that a retransmitted BYE gets the same 200 here
// until Timer J (64*T1) would have ended the transaction.
//
// Everything else goes the sipgo way to onBye: BYEs of outbound calls, of
// calls not yet ACKed (onBye records the answer), with a CSeq below the
// INVITE's, of unknown dialogs (481). It must not block: the read loop
// runs it.
func (a *Agent) takeBye(info sip.TransportReadProps, conn net.PacketConn, data []byte, h *rawHead) bool {
	id, seq, l, ok := a.rawDialog(h, "BYE")
	if !ok {
		return false
	}
	branch := viaBranch(h.topVia)
	if len(branch) == 0 {
		return false // an RFC 2543 peer: sipgo matches its transactions
	}
	key := fastByeKey(id, h.cseqNum, branch)
	if l == nil || l.byeTaken.Load() {
		// A retransmission of a BYE taken here (the leg may not be gone
		// yet): the same 200 again.
		if st, ok := a.txs.recall(key); ok && st == 200 {
			_ = a.sendFastBye200(info, conn, data)
			return true
		}
		return false
	}
	if !l.inbound || l.uas == nil || l.uas.LoadState() != sip.DialogStateConfirmed || !l.byeTaken.CompareAndSwap(false, true) {
		return false
	}
	// sipgo's ReadBye checks the CSeq (never below the INVITE's), ends
	// the INVITE transaction and the dialog, and answers through tx: our
	// raw 200.
	tx := &rawTx{send: func() error { return a.sendFastBye200(info, conn, data) }}
	if err := l.uas.ReadBye(cseqRequest(sip.BYE, seq), tx); err != nil {
		l.byeTaken.Store(false)
		return false // onBye answers it (481) and says why
	}
	// A retransmission that came before this goes the sipgo way, which
	// answers it 200 too (the leg is still registered).
	a.txs.remember(key, 200)
	a.fastByes.Add(1)
	a.work.Go(l.endByBye)
	return true
}

// endByBye ends a leg its peer hung up.
func (l *Leg) endByBye() {
	l.log.Info("sip: remote hangup (BYE)")
	l.end(ErrRemoteHangup)
}

// errNoVia: a request without a Via cannot be answered.
var errNoVia = errors.New("sip: no Via to answer to")

// sendFastBye200 answers the BYE data with a 200 built from its headers.
func (a *Agent) sendFastBye200(info sip.TransportReadProps, conn net.PacketConn, data []byte) error {
	out, ok := appendStatelessHead(append(make([]byte, 0, 512), "SIP/2.0 200 OK\r\n"...), data, true, nil)
	if !ok || info.RemoteAddr == nil {
		return errNoVia
	}
	out = append(out, "Server: "...)
	out = append(out, a.cfg.UserAgent...)
	out = append(out, "\r\nContent-Length: 0\r\n\r\n"...)
	err := a.sendRaw(info, conn, out)
	if err != nil {
		a.log.Debug("sip: 200 to BYE not sent", "error", err)
	}
	return err
}

// fastByeKey names a BYE answered in the read loop in a.txs: its dialog,
// CSeq number and top Via branch (apart from sipgo's transaction keys,
// which never hold a NUL).
func fastByeKey(dialog string, cseq, branch []byte) string {
	b := make([]byte, 0, len("bye\x00")+len(dialog)+len(cseq)+len(branch)+2)
	b = append(b, "bye\x00"...)
	b = append(b, dialog...)
	b = append(b, 0)
	b = append(b, cseq...)
	b = append(b, 0)
	b = append(b, branch...)
	return string(b)
}

// viaBranch returns the branch parameter of the first value of a Via
// header line when it is an RFC 3261 one (z9hG4bK...); nil otherwise.
func viaBranch(via []byte) []byte {
	if i := bytes.IndexByte(via, ','); i >= 0 {
		via = via[:i] // the first of several values on one line
	}
	if b := headerParam(via, "branch"); len(b) > len(sip.RFC3261BranchMagicCookie) && bytes.HasPrefix(b, []byte(sip.RFC3261BranchMagicCookie)) {
		return b
	}
	return nil
}

// rawTx is the server transaction sipgo's dialog answers through when we
// took the request in the read loop: Respond sends our raw response (the
// *sip.Response sipgo built is not used).
type rawTx struct {
	send func() error
}

func (t *rawTx) Respond(*sip.Response) error        { return t.send() }
func (t *rawTx) Acks() <-chan *sip.Request          { return nil }
func (t *rawTx) OnCancel(sip.FnTxCancel) bool       { return false }
func (t *rawTx) Terminate()                         {}
func (t *rawTx) OnTerminate(sip.FnTxTerminate) bool { return false }
func (t *rawTx) Done() <-chan struct{}              { return closedDone }
func (t *rawTx) Err() error                         { return nil }

// closedDone is a closed channel: rawTx is done when it has answered.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
