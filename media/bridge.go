package media

// Bridge connects two started endpoints so that each hears the other, and
// returns the function that disconnects them.
//
// When both legs use the same codec at the same clock rate the bridge is a
// passthrough: each endpoint's reader forwards packets straight out of the
// other's transport, rewriting only the RTP header (SSRC, payload type,
// sequence, timestamp). Nothing is decoded, nothing allocated, no goroutine
// added; telephone-events are forwarded when both sides negotiated them.
// Otherwise audio goes through each endpoint's jitter buffer, is decoded
// into a Pipe each way and re-encoded by the other endpoint's sender (the
// Pipe adds two 20 ms frames, which absorb the phase between the two legs'
// ticks; network jitter is the jitter buffer's job), converted between
// sample rates when the codecs differ in rate (G.722's 16 kHz, Opus's 48
// kHz, G.711's 8 kHz). The passthrough path has no jitter buffer: the far
// end's absorbs the jitter of both hops. RFC 4733 digits cannot be
// forwarded as packets between different RTP clocks, so each digit is
// re-sent as a new 100 ms event on the other leg (when that leg
// negotiated telephone-event; the length of a long press is not kept).
//
// Bridging replaces what either endpoint was playing. The sinks of both
// endpoints are left alone in passthrough mode; in transcoding mode they are
// taken for the pipes and cleared by the returned function.
func Bridge(a, b *Endpoint) (unbridge func()) {
	ca, cb := a.Config(), b.Config()
	if ca.Codec.Name == cb.Codec.Name && ca.Codec.ClockRate == cb.Codec.ClockRate {
		a.stopCurrent()
		b.stopCurrent()
		a.ForwardTo(b)
		b.ForwardTo(a)
		return func() {
			a.ForwardTo(nil)
			b.ForwardTo(nil)
		}
	}
	ab, ba := NewPipe(2), NewPipe(2)
	a.SetSink(ab)
	b.SetSink(ba)
	a.relay.Store(b)
	b.relay.Store(a)
	stopB := b.Play(ab, nil)
	stopA := a.Play(ba, nil)
	return func() {
		a.relay.Store(nil)
		b.relay.Store(nil)
		a.SetSink(nil)
		b.SetSink(nil)
		stopA()
		stopB()
	}
}

// stopCurrent ends the current playback, if any, with ErrInterrupted.
func (e *Endpoint) stopCurrent() {
	e.mu.Lock()
	p := e.play
	e.mu.Unlock()
	if p != nil {
		e.stopPlayback(p, ErrInterrupted)
	}
}
