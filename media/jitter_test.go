package media

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// seqCodec is a test codec whose every payload decodes to one 20 ms frame
// at 8 kHz holding the 16-bit tag in the payload's first two bytes, so a
// test can see which packet each output frame came from.
type seqCodec struct{}

func (seqCodec) Encode(dst []byte, pcm []int16) []byte {
	return binary.BigEndian.AppendUint16(dst, uint16(pcm[0]))
}

func (seqCodec) Decode(dst []int16, payload []byte) []int16 {
	var tag int16
	if len(payload) >= 2 {
		tag = int16(binary.BigEndian.Uint16(payload))
	}
	for range 160 {
		dst = append(dst, tag)
	}
	return dst
}

var seqSpec = codec.CodecSpec{Name: "SEQ", ClockRate: 8000, SampleRate: 8000, Channels: 1, PayloadType: 96, New: func() codec.Codec { return seqCodec{} }}

func tagPayload(tag uint16) []byte { return binary.BigEndian.AppendUint16(nil, tag) }

// jbDrive feeds a link's deliveries into jb and pops one frame every
// 20 ms, as an endpoint's reader and pacer do, from the first arrival plus
// phase until until. It returns the kind of every popped frame (FrameNone
// excluded), all output samples, and the packet indexes refused as late.
type jbOutput struct {
	kinds []FrameKind
	pcm   []int16
	late  map[int]bool
	// delivered tells which packet each frame played, for tagged payloads.
}

func jbDrive(jb *JitterBuffer, run simRun, payload func(i int) []byte, phase time.Duration, until time.Time, tick func(now time.Time)) jbOutput {
	out := jbOutput{late: map[int]bool{}}
	if len(run.Packets) == 0 {
		return out
	}
	f := NewFrame(jb.Codec().SampleRate)
	next := 0
	for now := run.Packets[0].Arrival.Add(phase); !now.After(until); now = now.Add(20 * time.Millisecond) {
		for ; next < len(run.Packets) && !run.Packets[next].Arrival.After(now); next++ {
			p := run.Packets[next]
			if jb.Push(7, p.Seq, p.TS, payload(p.Index), p.Arrival) == PushLate {
				out.late[p.Index] = true
			}
		}
		k := jb.Pop(now, f)
		if k != FrameNone {
			out.kinds = append(out.kinds, k)
			out.pcm = append(out.pcm, f.Samples...)
		}
		if tick != nil {
			tick(now)
		}
	}
	return out
}

func longestRun(n int, missing func(i int) bool) int {
	best, cur := 0, 0
	for i := range n {
		if missing(i) {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// A 1 kHz tone sent as PCMU over a link with 5 % loss, 30 ms jitter,
// reordering and duplicates comes out of the jitter buffer as a 1 kHz
// tone with one concealed frame per missing packet and no longer gap than
// the loss pattern forces; the RFC 3550 receive statistics of the same
// packets match the link.
func TestJitterToneOverLossyLink(t *testing.T) {
	const n = 3000 // 60 s
	spec := codec.Codecs()[0]
	tone := sine(1000, 0, 0)
	enc := spec.New()
	frame := NewFrame(8000)
	payloads := make([][]byte, n)
	for i := range payloads {
		if err := tone.ReadFrame(frame); err != nil {
			t.Fatal(err)
		}
		payloads[i] = enc.Encode(nil, frame.Samples)
	}
	link := simLink{Seed: 3550, Loss: 0.05, Delay: 80 * time.Millisecond, Jitter: 30 * time.Millisecond, Reorder: 0.02, Duplicate: 0.01}
	start := time.Unix(2000, 0)
	run := link.run(n, start, 65000, 0xfffff000, 160) // both counters wrap
	jb := NewJitterBuffer(spec, JitterOptions{})
	var rs recvStats
	var jitterSum time.Duration
	var samples int
	pushed := 0
	lastAudioAt := 0
	out := jbDrive(jb, run, func(i int) []byte { return payloads[i] }, 7*time.Millisecond, start.Add(n*20*time.Millisecond+time.Second), func(now time.Time) {
		// The RFC 3550 statistics see the same packets (a report every second).
		for ; pushed < len(run.Packets) && !run.Packets[pushed].Arrival.After(now); pushed++ {
			p := run.Packets[pushed]
			rs.update(7, p.Seq, p.TS, p.Arrival, 8000)
			if (pushed+1)%50 == 0 {
				_, _, j := rs.snapshot()
				jitterSum += j
				samples++
			}
		}
	})
	for i, k := range out.kinds {
		if k == FrameAudio {
			lastAudioAt = i
		}
	}
	kinds := out.kinds[:lastAudioAt+1] // after the last packet only silence follows
	st := jb.Stats()
	missing := func(i int) bool { return run.Lost[i] || out.late[i] }
	nMissing := 0
	for i := range n {
		if missing(i) {
			nMissing++
		}
	}
	t.Logf("link: lost %d, jitter %s; buffer: %+v; missing at playout %d (late %d)", run.lostCount(), run.jitter(), st, nMissing, len(out.late))

	// Every packet is either played or missing (lost or late).
	if st.Played != uint64(n-nMissing) {
		t.Errorf("played %d packets, want %d", st.Played, n-nMissing)
	}
	// One concealed frame per missing packet (the last packet of the
	// stream was played, so every gap is closed).
	if st.Concealed != uint64(nMissing) {
		t.Errorf("concealed %d frames, %d packets were missing", st.Concealed, nMissing)
	}
	if st.Late > uint64(n)/50 {
		t.Errorf("%d late packets: the target delay (%s) does not cover the jitter", st.Late, st.TargetDelay)
	}
	if st.Duplicates == 0 {
		t.Error("no duplicates recognised")
	}
	// No run of synthesized frames is longer than the run of missing
	// packets that forced it, and silence appears only once a run is
	// longer than the fade.
	worst := longestRun(n, missing)
	synth := longestRun(len(kinds), func(i int) bool { return kinds[i] == FrameConcealed })
	silent := longestRun(len(kinds), func(i int) bool { return dsp.RMS(out.pcm[i*160:(i+1)*160]) == 0 })
	if synth > worst {
		t.Errorf("%d concealed frames in a row, longest loss run %d", synth, worst)
	}
	if silent > max(0, worst-jbFadeFrames) {
		t.Errorf("%d silent frames in a row, longest loss run %d", silent, worst)
	}
	// The tone is still 1 kHz, second by second.
	pcm := out.pcm[:len(kinds)*160]
	for s := 8000; s+8000 <= len(pcm); s += 8000 {
		if f, _ := dsp.DominantFrequency(pcm[s:s+8000], 8000, 100, 3800, 10); math.Abs(f-1000) > 5 {
			t.Fatalf("second %d: heard %.1f Hz, want 1000", s/8000, f)
		}
	}
	// RFC 3550 statistics agree with what the link did (within 10 %).
	_, lost, _ := rs.snapshot()
	if d := math.Abs(float64(lost)-float64(run.lostCount())) / float64(run.lostCount()); d > 0.1 {
		t.Errorf("RFC 3550 lost %d, link lost %d", lost, run.lostCount())
	}
	meanJ := jitterSum / time.Duration(samples)
	if d := math.Abs(float64(meanJ-run.jitter())) / float64(run.jitter()); d > 0.1 {
		t.Errorf("RFC 3550 jitter %s (mean of %d reports), link jitter %s", meanJ, samples, run.jitter())
	}
	t.Logf("RFC 3550: lost %d, jitter %s; longest loss run %d, concealed run %d, silent run %d", lost, meanJ, worst, synth, silent)
}

// playedTags returns the tags of the audio frames in out, in order.
func playedTags(out jbOutput) []uint16 {
	var tags []uint16
	for i, k := range out.kinds {
		if k == FrameAudio {
			tags = append(tags, uint16(out.pcm[i*160]))
		}
	}
	return tags
}

// checkInOrder checks that tags are the n packets from first on, in
// order, each once, except skipped ones the buffer discarded to shrink.
func checkInOrder(t *testing.T, tags []uint16, first uint16, n int, skipped uint64) {
	t.Helper()
	if len(tags)+int(skipped) != n {
		t.Fatalf("played %d frames and skipped %d, want %d", len(tags), skipped, n)
	}
	want := first
	for i, tag := range tags {
		if d := int16(tag - want); d < 0 || d > int16(skipped) {
			t.Fatalf("frame %d is packet %d, want %d", i, tag, want)
		}
		want = tag + 1
	}
}

// Sequence numbers and timestamps both wrap while packets are reordered:
// every packet is played once, in order.
func TestJitterWraparound(t *testing.T) {
	const n = 400
	link := simLink{Seed: 1, Delay: 40 * time.Millisecond, Jitter: 15 * time.Millisecond, Reorder: 0.05}
	start := time.Unix(3000, 0)
	run := link.run(n, start, 65436, 0xffffff00, 160)
	// A fixed 200 ms delay: no packet is late, so every one must play.
	jb := NewJitterBuffer(seqSpec, JitterOptions{MinDelay: 200 * time.Millisecond})
	out := jbDrive(jb, run, func(i int) []byte { return tagPayload(65436 + uint16(i)) }, 3*time.Millisecond, start.Add(n*20*time.Millisecond+time.Second), nil)
	st := jb.Stats()
	if st.Resyncs != 0 {
		t.Fatalf("wraparound taken for a restart: %+v", st)
	}
	if len(out.late) != 0 {
		t.Fatalf("%d late packets with a 200 ms delay: %+v", len(out.late), st)
	}
	checkInOrder(t, playedTags(out), 65436, n, st.Skipped)
}

// A new SSRC restarts the buffer: the old stream's frames stop, the new
// one plays from its own first packet, in order.
func TestJitterSSRCChange(t *testing.T) {
	jb := NewJitterBuffer(seqSpec, JitterOptions{InitialDelay: 20 * time.Millisecond})
	start := time.Unix(4000, 0)
	f := NewFrame(8000)
	var tags []uint16
	var kinds []FrameKind
	for i := range 200 {
		now := start.Add(time.Duration(i) * 20 * time.Millisecond)
		if i < 100 {
			jb.Push(1, 100+uint16(i), 5000+uint32(i)*160, tagPayload(100+uint16(i)), now)
		} else {
			// The new source numbers from elsewhere entirely.
			k := uint16(i - 100)
			jb.Push(2, 40000+k, 123456789+uint32(k)*160, tagPayload(40000+k), now)
		}
		k := jb.Pop(now.Add(5*time.Millisecond), f)
		kinds = append(kinds, k)
		if k == FrameAudio {
			tags = append(tags, uint16(f.Samples[0]))
		}
	}
	st := jb.Stats()
	if st.Resyncs != 1 || st.Late != 0 || st.Concealed != 0 || st.Skipped != 0 {
		t.Fatalf("stats after SSRC change: %+v", st)
	}
	// The first stream plays in order up to where it was cut off, then
	// the second from its first packet.
	i := 0
	for ; i < len(tags) && tags[i] < 40000; i++ {
		if tags[i] != 100+uint16(i) {
			t.Fatalf("first stream frame %d is %d", i, tags[i])
		}
	}
	if i < 90 {
		t.Fatalf("only %d frames of the first stream", i)
	}
	checkInOrder(t, tags[i:], 40000, len(tags)-i, 0)
	if len(tags)-i < 90 {
		t.Fatalf("only %d frames of the second stream", len(tags)-i)
	}
	// The timeline has no hole at the switch: frames keep coming.
	for j, k := range kinds[5:] {
		if k == FrameNone {
			t.Fatalf("tick %d produced nothing", j+5)
		}
	}
}

// Every packet arrives twice — some copies while the original is still
// buffered, some after it was played: each is played once and every copy
// is counted as a duplicate, not as late.
func TestJitterDuplicates(t *testing.T) {
	const n = 500
	link := simLink{Seed: 9, Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond, Duplicate: 1}
	start := time.Unix(5000, 0)
	run := link.run(n, start, 1000, 0, 160)
	// Make half the copies very late (after their original has played).
	for i := range run.Packets {
		if run.Packets[i].Dup && run.Packets[i].Index%2 == 0 {
			run.Packets[i].Arrival = run.Packets[i].Arrival.Add(300 * time.Millisecond)
		}
	}
	sortArrival(run.Packets)
	jb := NewJitterBuffer(seqSpec, JitterOptions{})
	out := jbDrive(jb, run, func(i int) []byte { return tagPayload(1000 + uint16(i)) }, 11*time.Millisecond, start.Add(n*20*time.Millisecond+time.Second), nil)
	st := jb.Stats()
	if st.Duplicates != n || st.Late != 0 {
		t.Fatalf("duplicates %d (want %d), late %d: %+v", st.Duplicates, n, st.Late, st)
	}
	checkInOrder(t, playedTags(out), 1000, n, st.Skipped)
}

func sortArrival(p []simPacket) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].Arrival.Before(p[j-1].Arrival); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// A network stall of 100 ms delivers five packets at once: those whose
// playout time passed are refused as late and their slots concealed, and
// the delay grows at once so that the next stall costs nothing.
func TestJitterLatePackets(t *testing.T) {
	jb := NewJitterBuffer(seqSpec, JitterOptions{InitialDelay: 20 * time.Millisecond})
	start := time.Unix(6000, 0)
	f := NewFrame(8000)
	var late []uint16
	push := func(seq int, now time.Time) {
		if jb.Push(7, uint16(seq), uint32(seq)*160, tagPayload(uint16(seq)+1000), now) == PushLate {
			late = append(late, uint16(seq))
		}
	}
	var before JitterStats
	for i := range 200 {
		now := start.Add(time.Duration(i) * 20 * time.Millisecond)
		switch {
		case i%100 >= 50 && i%100 < 55: // stalled
		case i%100 == 55:
			for k := i - 5; k <= i; k++ {
				push(k, now)
			}
		default:
			push(i, now)
		}
		jb.Pop(now.Add(10*time.Millisecond), f)
		if i == 99 {
			before = jb.Stats()
		}
	}
	st := jb.Stats()
	t.Logf("first stall: %+v, late %v; second stall: %+v", before, late, st)
	if before.Late == 0 || before.Concealed != before.Late {
		t.Fatalf("first stall: late %d, concealed %d", before.Late, before.Concealed)
	}
	// The target covers the stall but for its single worst packet (the
	// estimate ignores one outlier per 50 packets).
	if before.TargetDelay < 80*time.Millisecond || before.Delay < 80*time.Millisecond || before.Expanded < 3 {
		t.Fatalf("the delay did not grow after a 100 ms stall: %+v", before)
	}
	if st.Late > before.Late+1 || st.Concealed != st.Late {
		t.Fatalf("the second stall lost more than its first packet: %+v", st)
	}
}

// The target delay follows the jitter: it grows under 40 ms jitter and
// comes back down (and the real delay with it) once the jitter stops.
func TestJitterTargetAdapts(t *testing.T) {
	const n = 3000
	start := time.Unix(7000, 0)
	calm := simLink{Seed: 5, Delay: 50 * time.Millisecond, Jitter: 500 * time.Microsecond}
	rough := simLink{Seed: 6, Delay: 50 * time.Millisecond, Jitter: 40 * time.Millisecond}
	a := calm.run(500, start, 0, 0, 160)                                            // 10 s calm
	b := rough.run(1000, start.Add(500*20*time.Millisecond), 500, 500*160, 160)     // 20 s jitter
	c := calm.run(n-1500, start.Add(1500*20*time.Millisecond), 1500, 1500*160, 160) // 30 s calm
	run := simRun{Packets: append(append(a.Packets, b.Packets...), c.Packets...), Lost: make([]bool, n)}
	for i := range run.Packets[500:] {
		run.Packets[500+i].Index += 500
	}
	for i := range run.Packets[1500:] {
		run.Packets[1500+i].Index += 1000
	}
	sortArrival(run.Packets)
	jb := NewJitterBuffer(seqSpec, JitterOptions{})
	var calm1, rough1, calm2 time.Duration
	var delay2 time.Duration
	_ = jbDrive(jb, run, func(i int) []byte { return tagPayload(uint16(i)) }, 5*time.Millisecond, start.Add(n*20*time.Millisecond), func(now time.Time) {
		switch el := now.Sub(start); {
		case el > 9*time.Second && el < 9020*time.Millisecond:
			calm1 = jb.Stats().TargetDelay
		case el > 29*time.Second && el < 29020*time.Millisecond:
			rough1 = jb.Stats().TargetDelay
		case el > 59*time.Second && el < 59020*time.Millisecond:
			st := jb.Stats()
			calm2, delay2 = st.TargetDelay, st.Delay
		}
	})
	st := jb.Stats()
	t.Logf("target: calm %s, jitter %s, calm again %s (delay %s); %+v", calm1, rough1, calm2, delay2, st)
	if calm1 > 30*time.Millisecond {
		t.Errorf("target %s on a calm link", calm1)
	}
	if rough1 < 100*time.Millisecond {
		t.Errorf("target %s under 40 ms jitter", rough1)
	}
	if calm2 > 30*time.Millisecond || delay2 > calm2+20*time.Millisecond {
		t.Errorf("after the jitter stopped: target %s, delay %s", calm2, delay2)
	}
	if st.Shrunk == 0 || st.Expanded == 0 {
		t.Errorf("delay never moved: %+v", st)
	}
}

// Push and Pop allocate nothing in steady state.
func TestJitterAllocatesNothing(t *testing.T) {
	jb := NewJitterBuffer(codec.Codecs()[0], JitterOptions{InitialDelay: 20 * time.Millisecond})
	payload := make([]byte, 160)
	f := NewFrame(8000)
	now := time.Unix(8000, 0)
	seq, ts := uint16(0), uint32(0)
	step := func() {
		jb.Push(7, seq, ts, payload, now)
		jb.Pop(now, f)
		seq++
		ts += 160
		now = now.Add(20 * time.Millisecond)
	}
	for range 100 {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%v allocations per packet", a)
	}
	if st := jb.Stats(); st.Played < 1000 || st.Concealed+st.Late+st.Expanded+st.Shrunk != 0 {
		t.Fatalf("not in steady state: %+v", st)
	}
}

// BenchmarkJitterPushPop: one op is one 20 ms PCMU packet pushed and one
// frame popped and decoded, with reordering.
func BenchmarkJitterPushPop(b *testing.B) {
	jb := NewJitterBuffer(codec.Codecs()[0], JitterOptions{})
	payload := make([]byte, 160)
	f := NewFrame(8000)
	now := time.Unix(8000, 0)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		// Swap neighbours every 8 packets.
		k := i
		if i%8 == 0 {
			k = i + 1
		} else if i%8 == 1 {
			k = i - 1
		}
		jb.Push(7, uint16(k), uint32(k)*160, payload, now)
		jb.Pop(now, f)
		i++
		now = now.Add(20 * time.Millisecond)
	}
	if st := jb.Stats(); st.Played < uint64(b.N)*9/10 {
		b.Fatalf("not in steady state: %+v", st)
	}
}

// FuzzJitter feeds arbitrary packet sequences (sequence and timestamp
// steps forwards and backwards, SSRC changes, odd payload sizes, uneven
// time) and pulls: nothing panics, and within one stream (between
// resyncs) audio frames come out in sequence order.
func FuzzJitter(f *testing.F) {
	f.Add([]byte{0, 1, 0, 160, 20, 1, 0, 0, 0, 20, 0, 1, 0, 160, 20, 1, 0, 0, 0, 20})
	f.Add([]byte{0, 2, 1, 64, 5, 0, 255, 254, 192, 5, 1, 0, 0, 0, 200, 1, 0, 0, 0, 20, 1, 0, 0, 0, 20})
	f.Add([]byte{2, 1, 0, 160, 0, 4, 100, 128, 0, 0, 0, 156, 7, 0, 30, 255, 1, 0, 160, 255, 1, 1, 1, 1, 1})
	f.Add([]byte{0, 127, 127, 255, 10, 0, 128, 128, 0, 10, 1, 0, 0, 0, 0, 248, 1, 0, 160, 20})
	f.Fuzz(func(t *testing.T, ops []byte) {
		jb := NewJitterBuffer(seqSpec, JitterOptions{})
		fr := NewFrame(8000)
		now := time.Unix(1e6, 0)
		seq, ts := uint16(0), uint32(0)
		var ssrc uint32 = 1
		payload := make([]byte, 700)
		resyncs := uint64(0)
		havePrev := false
		var prev uint16
		for len(ops) >= 5 {
			op := ops[:5]
			ops = ops[5:]
			now = now.Add(time.Duration(op[4]) * time.Millisecond)
			if op[0]&1 == 1 {
				k := jb.Pop(now, fr)
				if st := jb.Stats(); st.Resyncs != resyncs {
					resyncs, havePrev = st.Resyncs, false
				}
				if k == FrameAudio {
					tag := uint16(fr.Samples[0])
					if havePrev && int16(tag-prev) <= 0 {
						t.Fatalf("frame of packet %d after %d", tag, prev)
					}
					prev, havePrev = tag, true
				}
				continue
			}
			if op[0]&6 == 6 {
				ssrc++
			}
			seq += uint16(int8(op[1]))
			ts += uint32(int32(int16(uint16(op[2])<<8|uint16(op[3])))) * 8
			n := 2 + int(op[0]>>3)*22 // up to 684 bytes: some do not fit
			payload[0], payload[1] = byte(seq>>8), byte(seq)
			jb.Push(ssrc, seq, ts, payload[:n], now)
			if st := jb.Stats(); st.Resyncs != resyncs {
				resyncs, havePrev = st.Resyncs, false
			}
		}
	})
}

// A sender whose timestamps step back by 100 ms mid-stream (a source
// switch that restarts its clock) sends packets that are all behind the
// playout: after a few refused as late, the buffer starts over at the new
// timing instead of dropping the rest of the call.
func TestJitterSenderTimestampStep(t *testing.T) {
	jb := NewJitterBuffer(seqSpec, JitterOptions{InitialDelay: 40 * time.Millisecond})
	start := time.Unix(9000, 0)
	f := NewFrame(8000)
	var tags []uint16
	for i := range 300 {
		now := start.Add(time.Duration(i) * 20 * time.Millisecond)
		ts := uint32(i) * 160
		if i >= 100 {
			ts -= 5 * 160
		}
		jb.Push(7, uint16(i), ts, tagPayload(uint16(1000+i)), now)
		if jb.Pop(now.Add(3*time.Millisecond), f) == FrameAudio {
			tags = append(tags, uint16(f.Samples[0]))
		}
	}
	st := jb.Stats()
	t.Logf("%+v", st)
	if st.Resyncs != 1 || st.Late != jbLateRun-1 {
		t.Fatalf("after the timestamp step: %+v", st)
	}
	// The late packets were the sender's doing: they leave the delay alone.
	if st.TargetDelay > 40*time.Millisecond || st.Delay > 60*time.Millisecond {
		t.Fatalf("delay inflated by the timestamp step: %+v", st)
	}
	// Everything after the late ones plays (the last few are still
	// buffered when the test stops), in order.
	if len(tags)+int(st.Skipped) < 300-jbLateRun-5 || tags[len(tags)-1] < 1000+290 {
		t.Fatalf("played %d frames, last %d", len(tags), tags[len(tags)-1])
	}
	for i := 1; i < len(tags); i++ {
		if tags[i] <= tags[i-1] {
			t.Fatalf("packet %d played after %d", tags[i], tags[i-1])
		}
	}
}

// plcCodec is seqCodec with its own concealment: frames of -1.
type plcCodec struct{ seqCodec }

func (plcCodec) Conceal(dst []int16, samples int) []int16 {
	for range samples {
		dst = append(dst, -1)
	}
	return dst
}

// A missing packet is concealed by the last frame repeated with a fade
// over two frames, then silence; a codec with its own concealment is
// asked instead.
func TestJitterConcealment(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec codec.CodecSpec
	}{
		{"fade", seqSpec},
		{"codec", codec.CodecSpec{Name: "PLC", ClockRate: 8000, SampleRate: 8000, New: func() codec.Codec { return plcCodec{} }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jb := NewJitterBuffer(tc.spec, JitterOptions{InitialDelay: 20 * time.Millisecond})
			start := time.Unix(10000, 0)
			f := NewFrame(8000)
			var frames [][]int16
			var kinds []FrameKind
			for i := range 30 {
				now := start.Add(time.Duration(i) * 20 * time.Millisecond)
				if i < 10 || i >= 14 { // 10-13 lost
					jb.Push(7, uint16(i), uint32(i)*160, tagPayload(8000), now)
				}
				if k := jb.Pop(now.Add(5*time.Millisecond), f); k != FrameNone {
					kinds = append(kinds, k)
					frames = append(frames, append([]int16(nil), f.Samples...))
				}
			}
			first := -1
			for i, k := range kinds {
				if k == FrameConcealed {
					first = i
					break
				}
			}
			if first < 0 || kinds[first+3] != FrameConcealed || kinds[first+4] != FrameAudio {
				t.Fatalf("kinds %v", kinds)
			}
			c := frames[first : first+4]
			if tc.name == "codec" {
				for _, fr := range c {
					if fr[0] != -1 || fr[159] != -1 {
						t.Fatalf("codec concealment not used: %v", fr[:4])
					}
				}
				return
			}
			// 8000 fading linearly to 0 over 320 samples.
			if c[0][0] != 8000 || c[0][159] <= c[1][0] || c[1][0] != 4000 || c[1][159] > 50 {
				t.Fatalf("fade: %d..%d, %d..%d", c[0][0], c[0][159], c[1][0], c[1][159])
			}
			if dsp.RMS(c[2]) != 0 || dsp.RMS(c[3]) != 0 {
				t.Fatal("third and fourth concealed frames are not silent")
			}
			if st := jb.Stats(); st.Concealed != 4 {
				t.Fatalf("concealed %d, want 4", st.Concealed)
			}
		})
	}
}

// One producer and one consumer on different goroutines (run with
// -race): no data race, and audio still comes out in sequence order.
func TestJitterConcurrentPushPop(t *testing.T) {
	jb := NewJitterBuffer(seqSpec, JitterOptions{})
	start := time.Unix(11000, 0)
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			jb.Push(7, uint16(i), uint32(i)*160, tagPayload(uint16(i)), start.Add(time.Duration(i)*20*time.Millisecond))
		}
	}()
	f := NewFrame(8000)
	prev, have := uint16(0), false
	for i := range n {
		if jb.Pop(start.Add(time.Duration(i)*20*time.Millisecond), f) == FrameAudio {
			tag := uint16(f.Samples[0])
			if have && int16(tag-prev) <= 0 {
				t.Fatalf("packet %d after %d", tag, prev)
			}
			prev, have = tag, true
		}
	}
	<-done
	if st := jb.Stats(); st.Received+st.Late+st.Duplicates != n {
		t.Fatalf("packets unaccounted for: %+v", st)
	}
}

// An endpoint going idle resets its buffer only if nothing is buffered:
// the first packet of a talkspurt, pushed after the idle check but
// before the reset, still plays. A drained buffer is reset (the next
// packet starts a new stream).
func TestJitterResetIfDrainedKeepsAPushedPacket(t *testing.T) {
	jb := NewJitterBuffer(seqSpec, JitterOptions{InitialDelay: 20 * time.Millisecond})
	start := time.Unix(5000, 0)
	f := NewFrame(8000)
	now := start
	for i := range 10 {
		now = start.Add(time.Duration(i) * 20 * time.Millisecond)
		jb.Push(1, uint16(i), uint32(i)*160, tagPayload(uint16(i)), now)
		jb.Pop(now.Add(5*time.Millisecond), f)
	}
	for i := 0; jb.Buffered(); i++ { // the talkspurt's tail plays out
		if i == 50 {
			t.Fatal("the buffer never drained")
		}
		now = now.Add(20 * time.Millisecond)
		jb.Pop(now, f)
	}
	// Silence, then the next talkspurt's first packet arrives just as
	// the endpoint goes idle.
	now = now.Add(2 * time.Second)
	jb.Push(1, 100, 100*160+16000, tagPayload(100), now)
	if jb.resetIfDrained() {
		t.Fatal("reset a buffer holding the talkspurt's first packet")
	}
	played := false
	for i := range 10 {
		if jb.Pop(now.Add(time.Duration(i)*20*time.Millisecond), f) == FrameAudio && f.Samples[0] == 100 {
			played = true
			break
		}
	}
	if !played {
		t.Fatalf("the talkspurt's first packet did not play: %+v", jb.Stats())
	}
	for i := 0; jb.Buffered(); i++ {
		if i == 50 {
			t.Fatal("the buffer never drained")
		}
		now = now.Add(20 * time.Millisecond)
		jb.Pop(now, f)
	}
	if !jb.resetIfDrained() {
		t.Fatal("a drained buffer was not reset")
	}
}
