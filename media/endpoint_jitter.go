package media

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// rxPath is the decode side of an endpoint: the reader goroutine pushes
// received audio packets into a JitterBuffer, and the endpoint's 20 ms
// tick (the Pacer shard, or the endpoint's own ticker) pops one frame,
// decoded or concealed, and hands it to the in-band DTMF detector and the
// sink. The passthrough bridge does not go through here: it forwards
// packets as they arrive and leaves jitter to the far end.
type rxPath struct {
	jb atomic.Pointer[JitterBuffer]
	// Used only by the tick goroutine.
	frame  *Frame
	det    *DTMFDetector
	conv   dsp.RateConverter // wideband frames → 8 kHz for the detector
	narrow *Frame
}

// rxConsumers returns who wants the decoded audio: the sink, and whether
// in-band DTMF detection runs (no RFC 4733 from the peer, someone
// listening for digits).
func (e *Endpoint) rxConsumers(cfg *StreamConfig) (sink *sinkBox, inband bool) {
	sink = e.sink.Load()
	inband = cfg.DTMFPayloadType == 0 && e.onDTMF.Load() != nil
	return sink, inband
}

// pushAudio is the reader's side: a packet of the negotiated audio payload
// type goes into the jitter buffer when anyone consumes decoded audio. A
// new buffer is made (the only allocation) when the codec changes.
func (e *Endpoint) pushAudio(cfg *StreamConfig, hdr *rtp.Header, payload []byte, now time.Time) {
	if sink, inband := e.rxConsumers(cfg); sink == nil && !inband {
		return
	}
	jb := e.rx.jb.Load()
	if jb == nil || jb.spec.Name != cfg.Codec.Name || jb.spec.ClockRate != cfg.Codec.ClockRate {
		jb = NewJitterBuffer(cfg.Codec, JitterOptions{})
		e.rx.jb.Store(jb)
	}
	jb.Push(hdr.SSRC, hdr.SequenceNumber, hdr.Timestamp, payload, now)
	// An endpoint off the 20 ms pass because it had nothing to decode
	// has now: back on the pass from the next tick (one atomic load when
	// it is on it already).
	e.wake()
}

// mediaTick is the endpoint's 20 ms tick: play out one received frame,
// then send one. It reports quiet when neither side had anything to do
// (the pacer then takes the endpoint off the 20 ms pass: pacer.go).
func (e *Endpoint) mediaTick() (quiet bool) {
	now := time.Now() // one clock read serves the whole tick
	rq := e.recvTick(now)
	return e.sendTick(now) && rq
}

// recvTick pops this tick's frame from the jitter buffer and delivers it.
// Without a consumer the buffer is emptied, so a sink set later starts
// from fresh packets; the tick is then quiet.
func (e *Endpoint) recvTick(now time.Time) (quiet bool) {
	cfg := e.cfg.Load()
	if cfg == nil || e.isClosed.Load() {
		return false
	}
	jb := e.rx.jb.Load()
	sink, inband := e.rxConsumers(cfg)
	if sink == nil && !inband {
		if jb != nil {
			jb.Reset()
		}
		return true
	}
	if jb == nil {
		return true // nothing ever received: the first packet wakes it
	}
	r := &e.rx
	if r.frame == nil || r.frame.Rate != jb.spec.SampleRate {
		r.frame = NewFrame(jb.spec.SampleRate)
	}
	if jb.Pop(now, r.frame) == FrameNone {
		// Quiet once nothing is left to play out (no packets, or the
		// concealment after the last ones has ended); packets still
		// waiting for their playout delay keep the tick busy.
		return !jb.Buffered()
	}
	if inband {
		if r.det == nil {
			r.det = &DTMFDetector{OnDigit: e.InjectDTMF}
		}
		if r.frame.Rate == 8000 {
			_ = r.det.WriteFrame(r.frame)
		} else {
			// The detector works at 8 kHz: give it a narrowband copy of
			// G.722 and Opus frames.
			if r.narrow == nil {
				r.narrow = NewFrame(8000)
			}
			if out, ok := r.conv.Convert(r.narrow.Samples[:0], r.frame.Samples, r.frame.Rate, 8000); ok && len(out) == len(r.narrow.Samples) {
				_ = r.det.WriteFrame(r.narrow)
			}
		}
	}
	if sink != nil {
		e.writeSink(sink, r.frame)
	}
	return false
}

// JitterStats returns the counters of the endpoint's jitter buffer (zero
// until decoded audio has had a consumer).
func (e *Endpoint) JitterStats() JitterStats {
	if jb := e.rx.jb.Load(); jb != nil {
		return jb.Stats()
	}
	return JitterStats{}
}
