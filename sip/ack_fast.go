package sip

import (
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// takeAck confirms an answered inbound call from the ACK of its 200 in
// the UDP read loop, from the lint pass's raw header values, and reports
// whether it did (the datagram is then consumed). Every call has one such
// ACK; through sipgo it cost a full parse, a goroutine, a server
// transaction with its timers, and our onAck. It takes only the plain
// case and leaves everything else to sipgo and onAck: an ACK while we
// await an SDP answer in it (our offer in the 200) or a re-INVITE awaits
// its ACK, one whose CSeq is not the INVITE's, one for a dialog that is
// not waiting for it (retransmitted ACKs, ACKs of error responses,
// strays). A body on an ACK nobody awaits is ignored either way.
// It must not block: the read loop runs it.
func (a *Agent) takeAck(h *rawHead) bool {
	_, seq, l, ok := a.rawDialog(h, "ACK")
	if !ok || l == nil || !l.inbound || l.uas == nil || !l.sent2xx() || l.uas.LoadState() != sip.DialogStateEstablished {
		return false
	}
	l.mu.Lock()
	plain := !l.awaitingAnswer && l.ackSeen == nil
	l.mu.Unlock()
	if !plain {
		return false
	}
	// sipgo's ReadAck reads nothing but the CSeq, refuses one that is not
	// the INVITE's, and moves the dialog to Confirmed, which ends
	// Leg.Answer's wait (WriteResponse). What a caller of Answer may
	// read once it returns (AnsweredAt, the counter, verified media)
	// is set before: Answer's goroutine can run to its end before this
	// one takes another step.
	if cseq := l.uas.InviteRequest.CSeq(); cseq == nil || cseq.SeqNo != seq {
		return false
	}
	l.acked() // an ACK with the INVITE's CSeq: the caller had our 200
	l.ep.Verify()
	a.fastAcks.Add(1)
	if err := l.uas.ReadAck(cseqRequest(sip.ACK, seq), nil); err != nil {
		// A request in the dialog moved its CSeq on before this ACK
		// (sipgo then refuses the ACK whichever way it goes); the call
		// was answered all the same, as Answer's timeout will find.
		a.fastAcks.Add(-1)
		return false
	}
	return true
}

// cseqRequest is the least request sipgo's dialog checks read: ReadAck
// and ReadBye look at its CSeq alone. (sip.NewRequest would clone a URI
// and size a header list for ten, for every call's ACK and BYE.)
func cseqRequest(method sip.RequestMethod, seq uint32) *sip.Request {
	req := &sip.Request{Method: method}
	req.SipVersion = "SIP/2.0"
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	return req
}

// rawDialog reads an in-dialog request of method from the lint pass's
// raw values: its dialog ID (as our UAS side registered it), its CSeq
// number and the leg of that dialog (nil if none); ok is false for
// another method, a request without both tags, or an unreadable CSeq.
func (a *Agent) rawDialog(h *rawHead, method string) (id string, seq uint32, l *Leg, ok bool) {
	if string(h.method) != method || len(h.toTag) == 0 || len(h.fromTag) == 0 {
		return "", 0, nil, false
	}
	n, err := strconv.ParseUint(string(h.cseqNum), 10, 32)
	if err != nil {
		return "", 0, nil, false
	}
	id = sip.DialogIDMake(string(h.callID), string(h.toTag), string(h.fromTag))
	a.mu.Lock()
	l = a.uas[id]
	a.mu.Unlock()
	return id, uint32(n), l, true
}
