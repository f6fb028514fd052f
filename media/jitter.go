package media

import (
	"math"
	"sync"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
)

// Concealer is implemented by codecs that have their own packet loss
// concealment. A JitterBuffer whose decoder implements it calls Conceal for
// a missing frame instead of repeating and fading the last one. Conceal
// appends samples PCM samples to dst and returns it; it must not allocate
// when dst has capacity.
type Concealer interface {
	Conceal(dst []int16, samples int) []int16
}

// FrameKind says what JitterBuffer.Pop produced.
type FrameKind uint8

const (
	// FrameNone: nothing yet (no packet since the start or a Reset, or
	// the first talkspurt still buffering); the frame is untouched.
	FrameNone FrameKind = iota
	// FrameAudio: decoded from received packets.
	FrameAudio
	// FrameConcealed: synthesized for a 20 ms slot whose packet is
	// missing at its playout time (lost, late, or the peer is silent).
	// The first two such frames repeat the last audio, fading out; then
	// silence. A codec that implements Concealer synthesizes instead.
	FrameConcealed
	// FrameExpanded: synthesized like FrameConcealed, but inserted to
	// make the playout delay longer; the timeline position is unchanged.
	FrameExpanded
)

// PushResult says what JitterBuffer.Push did with a packet.
type PushResult uint8

const (
	PushOK        PushResult = iota // stored for playout
	PushLate                        // its playout time had passed: dropped
	PushDuplicate                   // already stored or played: dropped
	PushTooLarge                    // payload larger than a slot: dropped
)

// JitterOptions tune a JitterBuffer. The zero value is usable.
type JitterOptions struct {
	// MinDelay and MaxDelay bound the target playout delay (20 ms and
	// 200 ms by default). InitialDelay is the target before anything was
	// measured (60 ms).
	MinDelay, MaxDelay, InitialDelay time.Duration
	// Slots is how many packets the buffer holds (rounded up to a power of
	// two, and to at least MaxDelay of 10 ms packets; 32 by default: 640 ms
	// of 20 ms packets). MaxPayload is the
	// largest payload a slot takes (640 bytes: 80 ms of G.711).
	Slots, MaxPayload int
}

// JitterStats are a JitterBuffer's counters.
type JitterStats struct {
	Received   uint64 // packets stored for playout
	Played     uint64 // packets decoded and played out
	Late       uint64 // packets dropped because their playout time had passed
	Duplicates uint64 // packets dropped as duplicates
	TooLarge   uint64 // packets dropped because their payload did not fit a slot
	// Concealed counts synthesized frames that stood for lost or late
	// packets. Frames synthesized while the peer sent nothing at all
	// (silence suppression, hold) are not counted: a slot counts as
	// concealed only once a later packet shows, by its sequence number,
	// that packets were missing.
	Concealed uint64
	Expanded  uint64 // frames inserted to grow the delay
	// Shrunk counts 20 ms slots skipped to reduce the delay; Skipped
	// those of them that discarded a received packet (the rest were
	// silent slots).
	Shrunk, Skipped uint64
	Resyncs         uint64 // playout restarted: new SSRC, or a sequence or timestamp jump
	// TargetDelay is the playout delay the buffer aims for; Delay is the
	// delay it has now, both measured from the fastest packet of the last
	// ~2.5 s (so a constant network delay is not counted).
	TargetDelay, Delay time.Duration
}

const (
	jbWindow       = 128 // packets of transit history for the delay estimate
	jbShrinkEvery  = 50  // at most one audible shrink per second
	jbGrowEvery    = 5   // at most one audible expansion per 100 ms
	jbLateRun      = 5   // this many late packets in a row restart playout
	jbQuietAbs     = 64  // mean |sample| below this is silence, shrinkable
	jbDecayPerTick = 0.2 // target shrink rate, ms per 20 ms tick (10 ms/s)
	jbFadeFrames   = 2   // concealment frames that repeat the last audio
)

// JitterBuffer turns received RTP packets of one stream, in whatever order
// and timing they arrive, into a steady sequence of 20 ms PCM frames. The
// reader goroutine Pushes packets; one consumer Pops one frame per 20 ms
// tick. It reorders by sequence number, drops duplicates and packets that
// arrive after their playout time, follows sequence and timestamp
// wraparound, restarts on an SSRC change or a jump, and conceals missing
// packets so the timeline has no holes.
//
// The playout delay adapts: the target is the ~98th percentile of packet
// delay over the last 128 packets (relative to the fastest of them), plus
// 5 ms, bounded by MinDelay and MaxDelay; it rises at once and decays by
// 10 ms a second. The real delay follows: when it is below target a
// concealment frame is inserted (when the buffer runs empty, in a pause,
// or at most every 100 ms); when it is more than a frame above, a quiet
// frame (or, failing one, one frame a second) or a slot of silence is
// skipped. Five late packets in a row mean the sender's clock stepped,
// not the network: playout restarts there.
//
// Cost: Push copies the payload into a preallocated slot, Pop decodes one
// frame; neither allocates. A mutex serialises the two sides (one producer,
// one consumer; each holds it for well under a microsecond). Memory:
// Slots×MaxPayload bytes plus a few frames of PCM (~22 KB by default).
type JitterBuffer struct {
	mu sync.Mutex

	spec     codec.CodecSpec
	dec      codec.Codec
	plc      Concealer
	step     int64 // RTP timestamp units per 20 ms frame
	frameLen int   // PCM samples per 20 ms frame
	clock    int64
	minD     float64 // delay bounds in timestamp units
	maxD     float64
	guard    float64
	slots    []jbSlot
	mask     uint16

	started   bool // a packet arrived since the last reset
	ssrc      uint32
	epoch     time.Time
	haveEpoch bool
	refExt    int64 // highest extended timestamp seen (unwraps ts)

	playing    bool
	everPlayed bool
	nextSeq    uint16 // sequence number to play next
	maxSeq     uint16 // highest sequence number stored
	playTS     int64  // extended timestamp of the next 20 ms to play
	count      int    // packets in slots
	lastSeq    uint16 // last played sequence number
	havePlayed bool
	played     uint64  // bit i: nextSeq-1-i was played (tells duplicates from late)
	pending    uint64  // slots synthesized since the last played packet
	synthRun   int     // consecutive synthesized frames
	sinceCut   int     // ticks since the last audible shrink
	sinceGrow  int     // ticks since the last audible expansion
	lateRun    int     // consecutive packets refused as late
	preLate    float64 // the target before the current run of late packets

	fifo []int16 // decoded samples not yet played
	last []int16 // the last played audio frame

	transit  [jbWindow]int64 // arrival minus timestamp, in timestamp units
	tn, ti   int
	dirty    bool
	base     int64 // minimum transit over the window
	rawT     float64
	target   float64
	curDelay int64

	st JitterStats
}

type jbSlot struct {
	used bool
	seq  uint16
	ts   int64 // extended timestamp
	n    int
	data []byte
}

// NewJitterBuffer returns a jitter buffer that decodes spec. Everything it
// needs is allocated here.
func NewJitterBuffer(spec codec.CodecSpec, opts JitterOptions) *JitterBuffer {
	if opts.MinDelay <= 0 {
		opts.MinDelay = 20 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 200 * time.Millisecond
	}
	if opts.MaxDelay < opts.MinDelay {
		opts.MaxDelay = opts.MinDelay
	}
	if opts.InitialDelay <= 0 {
		opts.InitialDelay = 60 * time.Millisecond
	}
	if opts.Slots <= 0 {
		opts.Slots = 32
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 640
	}
	// Enough slots for MaxDelay of 10 ms packets, plus reordering.
	opts.Slots = max(opts.Slots, int(opts.MaxDelay/(10*time.Millisecond))+8)
	n := 1
	for n < opts.Slots && n < 1<<15 {
		n <<= 1
	}
	j := &JitterBuffer{
		spec:     spec,
		step:     int64(spec.TimestampStep()),
		frameLen: spec.SamplesPerFrame(),
		clock:    int64(spec.ClockRate),
		slots:    make([]jbSlot, n),
		mask:     uint16(n - 1),
	}
	if j.step <= 0 || j.clock <= 0 {
		j.step, j.clock = 160, 8000
	}
	if spec.New != nil {
		j.dec = spec.New()
		j.plc, _ = j.dec.(Concealer)
	}
	toTS := func(d time.Duration) float64 { return float64(d) * float64(j.clock) / float64(time.Second) }
	j.minD, j.maxD, j.guard = toTS(opts.MinDelay), toTS(opts.MaxDelay), toTS(5*time.Millisecond)
	j.target = min(max(toTS(opts.InitialDelay), j.minD), j.maxD)
	arena := make([]byte, n*opts.MaxPayload)
	for i := range j.slots {
		j.slots[i].data = arena[i*opts.MaxPayload : (i+1)*opts.MaxPayload : (i+1)*opts.MaxPayload]
	}
	// Room for a frame of leftovers plus the largest payload decoded at
	// one byte per sample (G.711), and a frame to spare.
	j.fifo = make([]int16, 0, 2*j.frameLen+opts.MaxPayload*max(1, spec.SampleRate/max(1, spec.ClockRate)))
	j.last = make([]int16, j.frameLen)
	return j
}

// Codec returns the codec the buffer decodes.
func (j *JitterBuffer) Codec() codec.CodecSpec { return j.spec }

// Buffered reports whether the buffer holds audio not yet played: stored
// packets or decoded samples waiting. An endpoint whose buffer holds
// nothing has no receive work until the next packet (which wakes it).
func (j *JitterBuffer) Buffered() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.count > 0 || len(j.fifo) > 0
}

// Stats returns the buffer's counters and its current delays.
func (j *JitterBuffer) Stats() JitterStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := j.st
	st.TargetDelay = j.tsDuration(int64(j.target))
	st.Delay = j.tsDuration(j.curDelay)
	return st
}

func (j *JitterBuffer) tsDuration(ts int64) time.Duration {
	return time.Duration(ts * int64(time.Second) / j.clock)
}

// Reset forgets the stream: the next packet starts a new one. The target
// delay is kept (the network path is probably the same).
func (j *JitterBuffer) Reset() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.started {
		j.reset(false)
	}
}

// resetIfDrained is Reset for an endpoint going idle: it forgets the
// stream only if nothing is buffered, checked under the same lock, so a
// packet pushed after the idle check (the first of a talkspurt, racing
// the pacer's demotion) is kept and played. It reports whether it reset.
func (j *JitterBuffer) resetIfDrained() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.count > 0 || len(j.fifo) > 0 {
		return false
	}
	if j.started {
		j.reset(false)
	}
	return true
}

// reset forgets the stream; keepTimeline makes Pop go on producing frames
// while the next stream buffers (an SSRC change mid-call).
func (j *JitterBuffer) reset(keepTimeline bool) {
	j.clearSlots()
	j.started, j.playing, j.havePlayed = false, false, false
	j.everPlayed = j.everPlayed && keepTimeline
	j.tn, j.ti, j.dirty = 0, 0, false
	j.pending, j.played, j.synthRun, j.lateRun = 0, 0, 0, 0
	j.fifo = j.fifo[:0]
	if !keepTimeline {
		clear(j.last)
	}
}

func (j *JitterBuffer) clearSlots() {
	if j.count > 0 {
		for i := range j.slots {
			j.slots[i].used = false
		}
	}
	j.count = 0
}

// resync restarts playout at the next packet, keeping the delay history.
func (j *JitterBuffer) resync() {
	j.st.Resyncs++
	j.clearSlots()
	j.playing, j.havePlayed = false, false
	j.pending, j.played, j.lateRun = 0, 0, 0
	j.fifo = j.fifo[:0]
}

// Push stores one received packet: ssrc, sequence number, RTP timestamp,
// payload (copied) and arrival time. Called by the reader goroutine.
func (j *JitterBuffer) Push(ssrc uint32, seq uint16, ts uint32, payload []byte, arrival time.Time) PushResult {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(payload) > len(j.slots[0].data) {
		j.st.TooLarge++
		return PushTooLarge
	}
	if j.started && ssrc != j.ssrc {
		j.reset(true)
		j.st.Resyncs++
	}
	if !j.started {
		j.started, j.ssrc = true, ssrc
		j.refExt = int64(ts)
		j.nextSeq, j.maxSeq = seq, seq
	}
	ext := j.refExt + int64(int32(ts-uint32(j.refExt)))
	now := j.clockAt(arrival)

	ds := int16(seq - j.nextSeq)
	switch {
	case j.playing && ds < 0 && ds >= -256:
		back := uint16(-ds) - 1
		if back < 64 && j.played&(1<<back) != 0 {
			j.st.Duplicates++
			return PushDuplicate
		}
		j.record(now - ext)
		j.st.Late++
		return PushLate
	case j.playing && (int(ds) >= len(j.slots) || ds < -256),
		j.playing && (ext-j.playTS > int64(2*j.maxD)+10*j.step || j.playTS-ext > 10*j.step):
		// A jump of the sequence or the clock: the sender restarted.
		j.resync()
		j.tn, j.ti = 0, 0
		j.refExt, ext = int64(ts), int64(ts)
		j.nextSeq, j.maxSeq = seq, seq
	case j.playing && ext+j.step <= j.playTS && j.lateRun+1 >= jbLateRun:
		// Packet after packet behind the playout: the sender's clock
		// stepped back (or paused), not the network. Start over here,
		// with the target from before these packets inflated it.
		j.resync()
		j.target = j.preLate
		j.tn, j.ti = 0, 0
		j.nextSeq, j.maxSeq = seq, seq
	case j.playing && ext+j.step <= j.playTS:
		if j.lateRun == 0 {
			j.preLate = j.target
		}
		j.lateRun++
		j.record(now - ext)
		j.st.Late++
		return PushLate
	case !j.playing && ds < 0:
		// Still buffering: an earlier packet moves the head back if the
		// window allows.
		if int(j.maxSeq-seq) >= len(j.slots) {
			j.st.Late++
			return PushLate
		}
		j.nextSeq = seq
	case !j.playing && int(ds) >= len(j.slots):
		j.clearSlots()
		j.nextSeq, j.maxSeq = seq, seq
	}
	s := &j.slots[seq&j.mask]
	if s.used {
		if s.seq == seq {
			j.st.Duplicates++
			return PushDuplicate
		}
		j.count-- // a stale occupant; cannot happen within the window
	}
	s.used, s.seq, s.ts, s.n = true, seq, ext, copy(s.data, payload)
	j.count++
	if int16(seq-j.maxSeq) > 0 {
		j.maxSeq = seq
	}
	if ext > j.refExt {
		j.refExt = ext
	}
	j.record(now - ext)
	j.lateRun = 0
	j.st.Received++
	return PushOK
}

// clockAt converts t to timestamp units since the buffer's epoch.
func (j *JitterBuffer) clockAt(t time.Time) int64 {
	if !j.haveEpoch {
		j.epoch, j.haveEpoch = t, true
	}
	return int64(t.Sub(j.epoch)/time.Microsecond) * j.clock / 1e6
}

func (j *JitterBuffer) record(transit int64) {
	j.transit[j.ti] = transit
	j.ti = (j.ti + 1) % jbWindow
	if j.tn < jbWindow {
		j.tn++
	}
	j.dirty = true
}

// updateTarget recomputes the delay estimate from the transit window (when
// packets arrived since the last tick) and lets the target decay.
func (j *JitterBuffer) updateTarget() {
	if j.dirty && j.tn > 0 {
		// One pass: the smallest transit (the base) and the k largest;
		// the k-th largest minus the base is the delay to cover, k-1
		// outliers ignored.
		w := j.transit[:j.tn]
		k := min(1+j.tn/50, 4)
		var top [4]int64
		for i := range top {
			top[i] = math.MinInt64
		}
		base := w[0]
		for _, t := range w {
			base = min(base, t)
			if t <= top[k-1] {
				continue
			}
			i := k - 1
			for ; i > 0 && t > top[i-1]; i-- {
				top[i] = top[i-1]
			}
			top[i] = t
		}
		j.base, j.rawT, j.dirty = base, float64(top[k-1]-base)+j.guard, false
	}
	j.target -= jbDecayPerTick * float64(j.clock) / 1000
	j.target = min(max(j.target, j.rawT, j.minD), j.maxD)
}

// Pop fills f (whose Rate must be the codec's sample rate) with the next
// 20 ms of audio at time now, and says what it is. Called once per 20 ms
// tick by the single consumer.
func (j *JitterBuffer) Pop(now time.Time, f *Frame) FrameKind {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.started || len(f.Samples) != j.frameLen {
		return FrameNone
	}
	nowTS := j.clockAt(now)
	j.updateTarget()
	if !j.playing {
		var head *jbSlot
		if j.count > 0 {
			head = &j.slots[j.nextSeq&j.mask]
		}
		if head == nil || !head.used || nowTS-j.base-head.ts < int64(j.target) {
			if !j.everPlayed {
				return FrameNone
			}
			// Re-buffering after a resync: keep the timeline going.
			j.synth(f.Samples)
			j.st.Expanded++
			return FrameExpanded
		}
		j.playing, j.everPlayed, j.playTS = true, true, head.ts
		j.sinceCut = 0
	}
	return j.play(nowTS, f.Samples)
}

func (j *JitterBuffer) play(nowTS int64, out []int16) FrameKind {
	T := int64(j.target)
	D := nowTS - j.base - j.playTS
	j.sinceCut++
	j.sinceGrow++
	if D < T-j.step/2 && len(j.fifo) == 0 && (j.synthRun > 0 || quiet(j.last) || j.sinceGrow >= jbGrowEvery) {
		// Well below target: add a frame of delay now, in a pause if
		// there is one, else at most every 100 ms.
		j.sinceGrow = 0
		j.curDelay = D
		j.synth(out)
		j.st.Expanded++
		return FrameExpanded
	}
	got := j.takeFifo(out)
	for got < len(out) {
		s := j.due()
		if s == nil {
			break
		}
		j.decode(s)
		// Too much delay: drop this frame if the next is here to replace
		// it and this one is quiet (or no frame was dropped for a second).
		if got == 0 && D > T+j.step && len(j.fifo) >= len(out) && j.nextReady() &&
			(quiet(j.fifo[:len(out)]) || j.sinceCut >= jbShrinkEvery) {
			j.fifo = j.fifo[:0]
			j.playTS += j.step
			D -= j.step
			j.sinceCut = 0
			j.st.Shrunk++
			j.st.Skipped++
			continue
		}
		got += j.takeFifo(out[got:])
	}
	j.curDelay = D
	if got == len(out) {
		j.playTS += j.step
		j.synthRun = 0
		copy(j.last, out)
		return FrameAudio
	}
	if got == 0 && j.count == 0 && D < T {
		// Nothing to play and less delay than needed: the packet is
		// probably on its way. Hold the timeline, one frame more delay.
		j.sinceGrow = 0
		j.synth(out)
		j.st.Expanded++
		return FrameExpanded
	}
	j.synth(out[got:])
	j.playTS += j.step
	j.pending++
	if got == 0 && j.count == 0 && D > T+j.step && j.synthRun > jbFadeFrames+1 {
		// The peer has been silent for a while and there is too much
		// delay: skip one more slot.
		j.playTS += j.step
		j.pending++
		j.st.Shrunk++
	}
	return FrameConcealed
}

// due returns the next packet to play if its time has come, skipping
// sequence numbers that are missing when a later packet is due; nil when
// nothing is due yet.
func (j *JitterBuffer) due() *jbSlot {
	if j.count == 0 {
		return nil
	}
	for k := range len(j.slots) {
		seq := j.nextSeq + uint16(k)
		s := &j.slots[seq&j.mask]
		if !s.used || s.seq != seq {
			continue
		}
		if s.ts-j.playTS >= j.step {
			return nil // the next packet belongs to a later slot
		}
		j.advance(k, false)
		return s
	}
	return nil
}

// nextReady reports whether the packet after the one just taken is
// stored and due by the following slot.
func (j *JitterBuffer) nextReady() bool {
	s := &j.slots[j.nextSeq&j.mask]
	return s.used && s.seq == j.nextSeq && s.ts-j.playTS < 2*j.step
}

func (j *JitterBuffer) advance(k int, played bool) {
	if k >= 64 {
		j.played = 0
	} else {
		j.played <<= uint(k)
	}
	if played {
		j.played |= 1
	}
	j.nextSeq += uint16(k)
}

// decode takes slot s out of the buffer, decodes it into the fifo and
// settles the concealment accounting.
func (j *JitterBuffer) decode(s *jbSlot) {
	s.used = false
	j.count--
	j.advance(1, true)
	if j.havePlayed {
		if gap := uint64(s.seq - j.lastSeq - 1); gap < 1<<15 {
			j.st.Concealed += min(gap, j.pending)
		}
	}
	j.pending = 0
	j.lastSeq, j.havePlayed = s.seq, true
	j.st.Played++
	if j.dec == nil {
		return
	}
	if cap(j.fifo)-len(j.fifo) < s.n*max(1, j.spec.SampleRate/j.spec.ClockRate) {
		return // cannot happen with the sizes chosen in NewJitterBuffer
	}
	j.fifo = j.dec.Decode(j.fifo, s.data[:s.n])
}

func (j *JitterBuffer) takeFifo(out []int16) int {
	n := copy(out, j.fifo)
	if n > 0 {
		rest := copy(j.fifo, j.fifo[n:])
		j.fifo = j.fifo[:rest]
	}
	return n
}

// synth fills out with concealment: the codec's own, or the last audio
// frame repeated with a fade to silence over jbFadeFrames frames.
func (j *JitterBuffer) synth(out []int16) {
	j.synthRun++
	if j.plc != nil {
		if n := copy(out, j.plc.Conceal(out[:0], len(out))); n < len(out) {
			clear(out[n:])
		}
		return
	}
	if j.synthRun > jbFadeFrames {
		clear(out)
		return
	}
	// Linear fade from 1 to 0 across the fade frames.
	total := jbFadeFrames * j.frameLen
	off := (j.synthRun-1)*j.frameLen + (j.frameLen - len(out))
	for i := range out {
		g := int32(total - off - i)
		out[i] = int16(int32(j.last[j.frameLen-len(out)+i]) * g / int32(total))
	}
}

func quiet(s []int16) bool {
	var sum int
	for _, v := range s {
		if v < 0 {
			sum -= int(v)
		} else {
			sum += int(v)
		}
	}
	return sum < jbQuietAbs*len(s)
}
