package sip

import "encoding/binary"

// wsFrames follows the frame boundaries of a WebSocket byte stream (RFC
// 6455 section 5.2) without decoding payloads, so the guard knows when a
// message is in progress and can give it MessageTimeout. sipgo decodes
// the frames itself.
type wsFrames struct {
	skip   int      // bytes of the replayed HTTP upgrade request still to pass
	hdr    [14]byte // the frame header read so far
	hdrN   int
	left   uint64 // payload bytes of the current frame still to come
	midMsg bool   // the last data frame had no FIN: the message goes on
}

// feed follows b through the stream.
func (w *wsFrames) feed(b []byte) {
	for len(b) > 0 {
		switch {
		case w.skip > 0:
			k := min(w.skip, len(b))
			w.skip -= k
			b = b[k:]
		case w.left > 0:
			k := min(uint64(len(b)), w.left)
			w.left -= k
			b = b[k:]
		default:
			w.hdr[w.hdrN] = b[0]
			w.hdrN++
			b = b[1:]
			if need := w.headerLen(); need > 0 && w.hdrN == need {
				w.frameStart()
			}
		}
	}
}

// headerLen is the length of the header being read, once its first two
// bytes are known (0 before).
func (w *wsFrames) headerLen() int {
	if w.hdrN < 2 {
		return 0
	}
	n := 2
	switch w.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if w.hdr[1]&0x80 != 0 {
		n += 4 // masking key
	}
	return n
}

func (w *wsFrames) frameStart() {
	switch l := w.hdr[1] & 0x7f; l {
	case 126:
		w.left = uint64(binary.BigEndian.Uint16(w.hdr[2:4]))
	case 127:
		w.left = binary.BigEndian.Uint64(w.hdr[2:10])
	default:
		w.left = uint64(l)
	}
	if op := w.hdr[0] & 0x0f; op < 8 { // data or continuation; control frames may come between fragments
		w.midMsg = w.hdr[0]&0x80 == 0
	}
	w.hdrN = 0
}

// inMessage reports whether a frame or a fragmented message is unfinished.
func (w *wsFrames) inMessage() bool {
	return w.skip == 0 && (w.hdrN > 0 || w.left > 0 || w.midMsg)
}
