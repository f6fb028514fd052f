package sip

import (
	"bytes"

	"github.com/switchboard-voice/switchboard/media"
)

// WebRTCMedia is the media of a call whose peer offered WebRTC — a browser
// SIP library (JsSIP, SIP.js) over WebSocket: ICE, DTLS-SRTP, rtcp-mux.
// The browser bridge answers the offer with a peer connection whose audio
// is Endpoint (a packet-transport stream, already started); Answer is the
// SDP answer, Close releases the peer connection.
type WebRTCMedia struct {
	Endpoint *media.Endpoint
	Answer   []byte
	Close    func()
}

// IsWebRTCOffer reports whether an SDP offer is WebRTC's: media over
// UDP/TLS/RTP/SAVPF (DTLS-SRTP with ICE), which plain RTP endpoints cannot
// answer.
func IsWebRTCOffer(sdp []byte) bool {
	return bytes.Contains(sdp, []byte("UDP/TLS/RTP/SAVPF")) || bytes.Contains(sdp, []byte("UDP/TLS/RTP/SAVP "))
}
