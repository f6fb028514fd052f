package sip

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/media/codec"
)

// Hold puts the far end on hold: a re-INVITE offering "sendonly" (we may
// still send, e.g. music on hold; the far end stops sending).
func (l *Leg) Hold(ctx context.Context) error { return l.Reinvite(ctx, "sendonly") }

// Unhold resumes two-way audio with a re-INVITE offering "sendrecv".
func (l *Leg) Unhold(ctx context.Context) error { return l.Reinvite(ctx, "sendrecv") }

// Reinvite sends a re-INVITE offering the current codec with the given
// direction, applies the answer (direction, and the far end's address if it
// moved) and ACKs it. A non-2xx answer leaves the session as it was and is
// returned as a *StatusError (491 Request Pending when both sides
// re-INVITE at once).
func (l *Leg) Reinvite(ctx context.Context, direction string) error {
	return l.Reoffer(ctx, direction, nil)
}

// Reoffer is Reinvite offering other codecs (in preference order; nil
// keeps the current one): the codec the answer picks becomes the leg's.
// A phone switching from PCMU to PCMA mid-call does this.
func (l *Leg) Reoffer(ctx context.Context, direction string, codecs []codec.CodecSpec) error {
	if l.State() != LegAnswered {
		return fmt.Errorf("sip: re-INVITE on a leg that is not answered")
	}
	cfg := l.ep.Config()
	sdp := SessionSDP{Addr: netip.AddrPortFrom(l.ip, l.ep.LocalAddr().Port()), Codecs: []codec.CodecSpec{cfg.Codec},
		PTs: []uint8{cfg.PayloadType}, DTMFPT: cfg.DTMFPayloadType, Direction: direction, RTCPMux: cfg.RTCPMux,
		Crypto: l.offerCryptoFor(&cfg), RTCPOnRTPPort: l.agent.cfg.RTCPOnRTPPort}
	if len(codecs) > 0 {
		sdp.Codecs, sdp.PTs = codecs, nil
		for _, c := range codecs {
			sdp.PTs = append(sdp.PTs, c.PayloadType)
		}
	}
	body := sdp.Marshal()
	req := sip.NewRequest(sip.INVITE, l.remoteTarget())
	req.AppendHeader(l.agent.contactFor(l.ip, l.transport()))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	l.mu.Lock()
	l.session.headers(req, true)
	l.mu.Unlock()
	req.SetBody(body)
	res, err := l.inDialog(ctx, req)
	if err != nil {
		return fmt.Errorf("sip: re-INVITE: %w", err)
	}
	l.ackReinvite(req, res)
	l.armSessionTimer() // any successful re-INVITE refreshes the session
	next, err := l.answerConfig(res.Body())
	if err != nil {
		return fmt.Errorf("sip: re-INVITE answer: %w", err)
	}
	// Keep our codec numbering unless we offered new codecs; take
	// direction and address from the answer.
	if len(codecs) > 0 {
		cfg.Codec, cfg.PayloadType, cfg.DTMFPayloadType = next.Codec, next.PayloadType, next.DTMFPayloadType
	}
	cfg.Direction, cfg.Remote = next.Direction, next.Remote
	cfg.RTCPMux, cfg.RemoteRTCP = next.RTCPMux, next.RemoteRTCP
	cfg.SRTP = next.SRTP // the peer may re-key in its answer
	l.ep.Configure(cfg)
	l.mediaChanged(cfg)
	l.log.Info("sip: re-INVITE done", "offered", direction, "now", cfg.Direction, "remote", cfg.Remote.String())
	return nil
}

// ackReinvite sends the ACK for a 2xx to our re-INVITE (outside any
// transaction, RFC 3261 13.2.2.4).
func (l *Leg) ackReinvite(req *sip.Request, res *sip.Response) {
	ack := sip.NewRequest(sip.ACK, req.Recipient)
	ack.AppendHeader(sip.HeaderClone(req.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(req.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: req.CSeq().SeqNo, MethodName: sip.ACK})
	maxFwd := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&maxFwd)
	for _, h := range req.GetHeaders("Route") {
		ack.AppendHeader(sip.HeaderClone(h))
	}
	ack.SetTransport(req.Transport())
	ack.SetDestination(req.Destination())
	if err := l.agent.clientFor(req.Transport()).WriteRequest(ack); err != nil {
		l.log.Warn("sip: ACK for re-INVITE not sent", "error", err)
	}
}

// remoteTarget is the far end's Contact: where in-dialog requests go.
func (l *Leg) remoteTarget() sip.Uri {
	if l.uas != nil {
		return l.uas.InviteRequest.Contact().Address
	}
	return l.uac.InviteResponse.Contact().Address
}

// transport is the dialog's transport ("UDP", "TCP").
func (l *Leg) transport() string {
	if l.uas != nil {
		return l.uas.InviteRequest.Transport()
	}
	return l.uac.InviteRequest.Transport()
}

// inDialog sends req inside the leg's dialog and waits for the final
// response; a non-2xx is returned as a *StatusError.
func (l *Leg) inDialog(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	// A BYE or CANCEL that ends the dialog while the request is pending
	// must not leave the caller waiting for Timer B.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-l.done:
			cancel(fmt.Errorf("sip: %s aborted: %w", req.Method, l.Err()))
		case <-ctx.Done():
		}
	}()
	var res *sip.Response
	var err error
	if l.uas != nil {
		res, err = l.uas.Do(ctx, req)
	} else {
		res, err = l.uac.Do(ctx, req)
	}
	if err != nil {
		if c := context.Cause(ctx); c != nil && ctx.Err() != nil {
			return nil, c
		}
		return nil, err
	}
	if !res.IsSuccess() {
		return res, statusError(res.StatusCode, res.Reason)
	}
	return res, nil
}
