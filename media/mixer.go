package media

import (
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/media/dsp"
)

// Mixer is a conference bridge: every participant hears the sum of all the
// others, never itself. It runs on its own 20 ms clock, so a slow or silent
// participant never paces the mix: an input with no frame ready counts as
// silence for that tick (no starvation, no waiting), and an input that
// bursts is held in a short per-input queue (up to 5 frames; beyond that
// the oldest frames are dropped, bounding the delay a burst can add).
//
// Sums are computed in 32 bits and saturated to 16 bits per listener, with
// per-participant gain (applied to what the participant says) and mute.
//
// Cost: one goroutine per mixer; per tick O(participants × samples).
type Mixer struct {
	rate int

	mu    sync.Mutex
	parts []*Participant
	stop  chan struct{}
	done  chan struct{}
	sum   []int32
	// private counts participants with an audience (whisperers).
	private int
	// ann is an announcement everyone hears (Announce), read at the
	// mixer's rate into annFrame.
	ann      Source
	annFrame *Frame
}

// Participant is one leg of a Mixer: a Sink for what it says and a Source
// for what it hears.
type Participant struct {
	m *Mixer

	mu    sync.Mutex
	in    frameRing // queued frames of what it says
	out   frameRing // queued frames of what it hears (mix-minus)
	spare [][]int16
	gain  float64
	muted bool
	// audience, when set, is the only participant that hears this one
	// (a whisper); guarded by the mixer's mu, not the participant's.
	audience *Participant
	// said is the frame taken from in for the current tick (nil: silent).
	said []int16
	// inConv and outConv adapt a leg whose codec runs at another rate
	// than the mixer (a 16 kHz G.722 leg in an 8 kHz room).
	inConv, outConv dsp.RateConverter
}

// mixerDepth is how many frames an input or output queue holds before
// the oldest is dropped.
const mixerDepth = 5

// frameRing is a fixed queue of frames that never allocates.
type frameRing struct {
	buf  [mixerDepth][]int16
	head int
	n    int
}

// push appends f and returns the frame it displaced when full, or nil.
func (r *frameRing) push(f []int16) (dropped []int16) {
	if r.n == mixerDepth {
		dropped = r.buf[r.head]
		r.buf[r.head] = nil
		r.head = (r.head + 1) % mixerDepth
		r.n--
	}
	r.buf[(r.head+r.n)%mixerDepth] = f
	r.n++
	return dropped
}

// pop removes and returns the oldest frame, or nil.
func (r *frameRing) pop() []int16 {
	if r.n == 0 {
		return nil
	}
	f := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % mixerDepth
	r.n--
	return f
}

// NewMixer starts a mixer at rate Hz (8000 for G.711 legs).
func NewMixer(rate int) *Mixer {
	m := &Mixer{rate: rate, stop: make(chan struct{}), done: make(chan struct{}), sum: make([]int32, SamplesPerFrame(rate))}
	go m.run()
	return m
}

// Rate returns the mixer's sample rate.
func (m *Mixer) Rate() int { return m.rate }

// Add makes a new participant. Wire it with ep.SetSink(p) and ep.Play(p, ...).
func (m *Mixer) Add() *Participant {
	p := &Participant{m: m, gain: 1}
	m.mu.Lock()
	m.parts = append(m.parts, p)
	m.mu.Unlock()
	return p
}

// Remove takes p out of the mix; it hears nothing more.
func (m *Mixer) Remove(p *Participant) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p.audience != nil {
		p.audience = nil
		m.private--
	}
	for _, q := range m.parts {
		if q.audience == p { // whispering to someone who left
			q.audience = nil
			m.private--
		}
	}
	for i, q := range m.parts {
		if q == p {
			m.parts = append(m.parts[:i], m.parts[i+1:]...)
			return
		}
	}
}

// Len returns the number of participants.
func (m *Mixer) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.parts)
}

// Close stops the mixer's clock.
func (m *Mixer) Close() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

func (m *Mixer) run() {
	defer close(m.done)
	t := time.NewTicker(FrameDurationMs * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Tick()
		}
	}
}

// Tick mixes one 20 ms frame. The mixer's clock calls it; tests may call
// it directly on a mixer whose clock they stopped.
func (m *Mixer) Tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.sum)
	for _, p := range m.parts {
		p.take()
		if p.said != nil && p.audience == nil {
			for i, s := range p.said {
				m.sum[i] += int32(s)
			}
		}
	}
	if m.ann != nil {
		if m.annFrame == nil {
			m.annFrame = NewFrame(m.rate)
		}
		if err := m.ann.ReadFrame(m.annFrame); err != nil {
			m.ann = nil
		} else {
			for i, s := range m.annFrame.Samples {
				m.sum[i] += int32(s)
			}
		}
	}
	for _, p := range m.parts {
		var whispers []*Participant
		if m.private > 0 {
			whispers = m.whispersTo(p)
		}
		p.hear(m.sum, whispers)
	}
}

// whispersTo lists the participants whose audience is p. It allocates
// only while someone whispers.
func (m *Mixer) whispersTo(p *Participant) []*Participant {
	var w []*Participant
	for _, q := range m.parts {
		if q.audience == p && q != p {
			w = append(w, q)
		}
	}
	return w
}

// Announce mixes src into what every participant hears until it ends
// (entry and exit tones); it replaces an announcement still playing. src
// is read on the mixer's clock and must not block.
func (m *Mixer) Announce(src Source) {
	m.mu.Lock()
	m.ann = src
	m.mu.Unlock()
}

// SetAudience makes only q hear p (a supervisor whispering to an agent);
// nil makes everyone hear p again. p still hears everyone.
func (p *Participant) SetAudience(q *Participant) {
	m := p.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if (p.audience == nil) != (q == nil) {
		if q == nil {
			m.private--
		} else {
			m.private++
		}
	}
	p.audience = q
}

// take pops the participant's next frame (gain and mute applied).
func (p *Participant) take() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.said != nil {
		p.spare = append(p.spare, p.said)
		p.said = nil
	}
	f := p.in.pop()
	if f == nil {
		return
	}
	if p.muted {
		p.spare = append(p.spare, f)
		return
	}
	if p.gain != 1 {
		for i, s := range f {
			f[i] = saturate16(int32(float64(s) * p.gain))
		}
	}
	p.said = f
}

// hear queues sum minus the participant's own contribution, plus what
// whisperers say to it alone.
func (p *Participant) hear(sum []int32, whispers []*Participant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.buffer(len(sum))
	own := p.said
	if p.audience != nil {
		own = nil // a whisperer's voice is not in sum
	}
	for i, s := range sum {
		if own != nil {
			s -= int32(own[i])
		}
		for _, w := range whispers {
			if w.said != nil {
				s += int32(w.said[i])
			}
		}
		out[i] = saturate16(s)
	}
	if old := p.out.push(out); old != nil {
		p.spare = append(p.spare, old)
	}
}

func (p *Participant) buffer(n int) []int16 {
	if k := len(p.spare); k > 0 {
		b := p.spare[k-1]
		p.spare = p.spare[:k-1]
		if cap(b) >= n {
			return b[:n]
		}
	}
	return make([]int16, n)
}

// WriteFrame queues what the participant says (called by its endpoint's
// reader). Frames at another rate are converted to the mixer's (rates that
// are not integer multiples of it are dropped).
func (p *Participant) WriteFrame(f *Frame) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := SamplesPerFrame(p.m.rate)
	b := p.buffer(n)
	if f.Rate == p.m.rate {
		copy(b, f.Samples)
	} else if out, ok := p.inConv.Convert(b[:0], f.Samples, f.Rate, p.m.rate); !ok || len(out) != n {
		p.spare = append(p.spare, b)
		return nil
	}
	if old := p.in.push(b); old != nil {
		p.spare = append(p.spare, old)
	}
	return nil
}

// ReadFrame yields the next frame the participant hears, or silence,
// converted to f.Rate when that differs from the mixer's rate.
func (p *Participant) ReadFrame(f *Frame) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.out.pop()
	if b == nil {
		clear(f.Samples)
		return nil
	}
	if f.Rate == p.m.rate {
		copy(f.Samples, b)
	} else if out, ok := p.outConv.Convert(f.Samples[:0], b, p.m.rate, f.Rate); !ok || len(out) != len(f.Samples) {
		clear(f.Samples)
	}
	p.spare = append(p.spare, b)
	return nil
}

// SetGain scales what the participant says (1 = unchanged).
func (p *Participant) SetGain(g float64) {
	p.mu.Lock()
	p.gain = g
	p.mu.Unlock()
}

// SetMuted mutes or unmutes what the participant says; it still hears.
func (p *Participant) SetMuted(muted bool) {
	p.mu.Lock()
	p.muted = muted
	p.mu.Unlock()
}

func saturate16(v int32) int16 {
	switch {
	case v > 32767:
		return 32767
	case v < -32768:
		return -32768
	}
	return int16(v)
}
