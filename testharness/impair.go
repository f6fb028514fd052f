package testharness

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Impairment describes what the network does to packets in one direction:
// the zero value is a perfect link. Every random choice comes from a PRNG
// seeded with Seed, drawn in packet order, so the same packets meet the
// same fate on every run.
type Impairment struct {
	// Seed makes the run reproducible; the two directions of a Link use
	// streams derived from it.
	Seed uint64
	// Loss is the long-run fraction of packets dropped (0–1).
	Loss float64
	// BurstLen is the mean length of a loss burst in packets: 0 or 1 means
	// independent (random) losses; above 1 a two-state Gilbert model
	// drops runs of packets with that mean length, keeping the rate Loss.
	BurstLen float64
	// Latency is added to every packet.
	Latency time.Duration
	// Jitter is the mean extra delay: each packet waits a uniformly drawn
	// 0..2×Jitter on top of Latency, so packets more than a packet time
	// apart in delay overtake each other as on a real network.
	Jitter time.Duration
	// Reorder is the fraction of packets held back an extra 50 ms (so
	// that later ones overtake them) regardless of Jitter.
	Reorder float64
	// Duplicate is the fraction of packets delivered twice.
	Duplicate float64
	// BandwidthKbps caps the link (0: unlimited): packets queue behind
	// each other at that rate and are dropped once they would wait more
	// than 200 ms (tail drop).
	BandwidthKbps int
}

// Validate reports the first field out of range.
func (im Impairment) Validate() error {
	switch {
	case im.Loss < 0 || im.Loss > 1:
		return fmt.Errorf("testharness: loss %v not in 0..1", im.Loss)
	case im.BurstLen < 0:
		return fmt.Errorf("testharness: burst length %v is negative", im.BurstLen)
	case im.Latency < 0 || im.Jitter < 0:
		return errors.New("testharness: latency and jitter must not be negative")
	case im.Reorder < 0 || im.Reorder > 1:
		return fmt.Errorf("testharness: reorder %v not in 0..1", im.Reorder)
	case im.Duplicate < 0 || im.Duplicate > 1:
		return fmt.Errorf("testharness: duplicate %v not in 0..1", im.Duplicate)
	case im.BandwidthKbps < 0:
		return fmt.Errorf("testharness: bandwidth %d kbit/s is negative", im.BandwidthKbps)
	}
	return nil
}

// String describes the impairment in a line ("loss 5% jitter 40ms seed 7").
func (im Impairment) String() string {
	var b strings.Builder
	if im.Loss > 0 {
		fmt.Fprintf(&b, "loss %.3g%% ", im.Loss*100)
		if im.BurstLen > 1 {
			fmt.Fprintf(&b, "burst %.3g ", im.BurstLen)
		}
	}
	if im.Latency > 0 {
		fmt.Fprintf(&b, "latency %s ", im.Latency)
	}
	if im.Jitter > 0 {
		fmt.Fprintf(&b, "jitter %s ", im.Jitter)
	}
	if im.Reorder > 0 {
		fmt.Fprintf(&b, "reorder %.3g%% ", im.Reorder*100)
	}
	if im.Duplicate > 0 {
		fmt.Fprintf(&b, "duplicate %.3g%% ", im.Duplicate*100)
	}
	if im.BandwidthKbps > 0 {
		fmt.Fprintf(&b, "bandwidth %dkbit/s ", im.BandwidthKbps)
	}
	if b.Len() == 0 {
		return "perfect"
	}
	fmt.Fprintf(&b, "seed %d", im.Seed)
	return b.String()
}

// Direction of a packet through a Link.
type Direction uint8

const (
	// Uplink is from the harness phone to the far end (the server).
	Uplink Direction = iota
	// Downlink is from the far end to the harness phone.
	Downlink
)

func (d Direction) String() string {
	switch d {
	case Uplink:
		return "uplink"
	case Downlink:
		return "downlink"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// LinkStats count what a Link did to one direction's packets.
type LinkStats struct {
	Received, Delivered, Lost, Duplicated, Reordered, Overflow uint64
	// Fate is the fate of the first 512 packets in arrival order: '.'
	// delivered, 'x' lost, 'd' duplicated, 'r' held back, 'o' dropped by
	// the bandwidth cap. Equal seeds and equal traffic give equal Fates.
	Fate string
}

// Link is an in-process UDP relay between a harness phone's RTP socket
// and the far end that impairs the packets passing through, one
// Impairment per direction. The phone offers the link's far-side address
// in its SDP and sends to the link's near side (sip.DialOptions
// OfferRTPAddr and RTPVia), so every RTP packet of the call crosses it.
// RTCP goes around it.
//
// Cost: two sockets, two reader and two scheduler goroutines per call,
// one allocation per packet (a copy held until its delivery time).
type Link struct {
	near, far *net.UDPConn // near: the phone talks to it; far: the server does
	dirs      [2]*linkDir
	mu        sync.Mutex
	phone     netip.AddrPort // where downlink packets go (latched)
	server    netip.AddrPort // where uplink packets go (from the answer)
	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
}

// NewLink opens a relay on 127.0.0.1 with up impairing what the phone
// sends and down what it receives.
func NewLink(up, down Impairment) (*Link, error) {
	if err := up.Validate(); err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if err := down.Validate(); err != nil {
		return nil, fmt.Errorf("downlink: %w", err)
	}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	near, err := net.ListenUDP("udp4", lo)
	if err != nil {
		return nil, fmt.Errorf("testharness: link: %w", err)
	}
	far, err := net.ListenUDP("udp4", lo)
	if err != nil {
		near.Close()
		return nil, fmt.Errorf("testharness: link: %w", err)
	}
	l := &Link{near: near, far: far, done: make(chan struct{})}
	l.dirs[Uplink] = newLinkDir(up, 0x75706c696e6b, func(b []byte) { l.send(Uplink, b) })
	l.dirs[Downlink] = newLinkDir(down, 0x646f776e6c696e6b, func(b []byte) { l.send(Downlink, b) })
	l.wg.Add(4)
	go l.read(near, Uplink)
	go l.read(far, Downlink)
	go l.dirs[Uplink].run(&l.wg, l.done)
	go l.dirs[Downlink].run(&l.wg, l.done)
	return l, nil
}

// NearAddr is where the phone sends its RTP (what RTPVia returns).
func (l *Link) NearAddr() netip.AddrPort { return l.near.LocalAddr().(*net.UDPAddr).AddrPort() }

// FarAddr is the address the phone offers in SDP: the server sends here.
func (l *Link) FarAddr() netip.AddrPort { return l.far.LocalAddr().(*net.UDPAddr).AddrPort() }

// Via records the far end's RTP address from the answer and returns the
// near address; it is sip.DialOptions.RTPVia.
func (l *Link) Via(remote netip.AddrPort) netip.AddrPort {
	l.mu.Lock()
	l.server = remote
	l.mu.Unlock()
	return l.NearAddr()
}

// Stats returns what the link did in direction d so far.
func (l *Link) Stats(d Direction) LinkStats { return l.dirs[d].stats() }

// Close stops the relay and waits for its goroutines.
func (l *Link) Close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.near.Close()
		l.far.Close()
		l.wg.Wait()
	})
}

func (l *Link) read(c *net.UDPConn, d Direction) {
	defer l.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		l.mu.Lock()
		if d == Uplink && !l.phone.IsValid() {
			l.phone = from // symmetric RTP: the phone's socket
		}
		l.mu.Unlock()
		l.dirs[d].arrive(buf[:n], time.Now())
	}
}

func (l *Link) send(d Direction, b []byte) {
	l.mu.Lock()
	phone, server := l.phone, l.server
	l.mu.Unlock()
	if d == Uplink {
		if server.IsValid() {
			_, _ = l.far.WriteToUDPAddrPort(b, server)
		}
		return
	}
	if phone.IsValid() {
		_, _ = l.near.WriteToUDPAddrPort(b, phone)
	}
}

// linkDir impairs one direction: arrive decides each packet's fate and
// delivery time; run delivers packets when they are due.
type linkDir struct {
	im      Impairment
	deliver func([]byte)

	mu       sync.Mutex
	rng      *rand.Rand
	bad      bool // Gilbert model state
	q        pktHeap
	seq      uint64 // arrival order, breaks ties in the heap
	busy     time.Time
	wake     chan struct{}
	st       LinkStats
	fate     []byte
	pGB, pBG float64
}

const fateLen = 512

func newLinkDir(im Impairment, salt uint64, deliver func([]byte)) *linkDir {
	d := &linkDir{im: im, deliver: deliver, rng: rand.New(rand.NewPCG(im.Seed, salt)), wake: make(chan struct{}, 1)}
	if im.BurstLen > 1 && im.Loss > 0 && im.Loss < 1 {
		// Two states: good (no loss) and bad (every packet lost). Mean
		// time in bad is BurstLen packets; the stationary share of bad
		// is Loss.
		d.pBG = 1 / im.BurstLen
		d.pGB = im.Loss * d.pBG / (1 - im.Loss)
	}
	return d
}

func (d *linkDir) lost() bool {
	if d.pBG == 0 {
		return d.im.Loss > 0 && d.rng.Float64() < d.im.Loss
	}
	if d.bad {
		d.bad = d.rng.Float64() >= d.pBG
	} else {
		d.bad = d.rng.Float64() < d.pGB
	}
	return d.bad
}

func (d *linkDir) arrive(b []byte, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.st.Received++
	// Draw every random number for every packet, in the same order, so a
	// packet's fate depends only on the seed and its position.
	lost := d.lost()
	dup := d.im.Duplicate > 0 && d.rng.Float64() < d.im.Duplicate
	reorder := d.im.Reorder > 0 && d.rng.Float64() < d.im.Reorder
	var extra time.Duration
	if d.im.Jitter > 0 {
		extra = time.Duration(d.rng.Float64() * float64(2*d.im.Jitter))
	}
	fate := byte('.')
	defer func() {
		if len(d.fate) < fateLen {
			d.fate = append(d.fate, fate)
		}
	}()
	if lost {
		d.st.Lost++
		fate = 'x'
		return
	}
	at := now.Add(d.im.Latency + extra)
	if reorder {
		at = at.Add(50 * time.Millisecond)
		d.st.Reordered++
		fate = 'r'
	}
	if d.im.BandwidthKbps > 0 {
		start := now
		if d.busy.After(start) {
			start = d.busy
		}
		if start.Sub(now) > 200*time.Millisecond {
			d.st.Overflow++
			fate = 'o'
			return
		}
		d.busy = start.Add(time.Duration(len(b)*8) * time.Second / time.Duration(d.im.BandwidthKbps*1000))
		if d.busy.Add(d.im.Latency + extra).After(at) {
			at = d.busy.Add(d.im.Latency + extra)
		}
	}
	n := 1
	if dup {
		n = 2
		d.st.Duplicated++
		fate = 'd'
	}
	for i := 0; i < n; i++ {
		d.seq++
		heap.Push(&d.q, &pkt{at: at, seq: d.seq, b: append([]byte(nil), b...)})
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *linkDir) run(wg *sync.WaitGroup, done <-chan struct{}) {
	defer wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.mu.Lock()
		var due []*pkt
		now := time.Now()
		for len(d.q) > 0 && !d.q[0].at.After(now) {
			due = append(due, heap.Pop(&d.q).(*pkt))
		}
		next := time.Hour
		if len(d.q) > 0 {
			next = d.q[0].at.Sub(now)
		}
		d.st.Delivered += uint64(len(due))
		d.mu.Unlock()
		for _, p := range due {
			d.deliver(p.b)
		}
		t.Reset(next)
		select {
		case <-done:
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

func (d *linkDir) stats() LinkStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.st
	s.Fate = string(d.fate)
	return s
}

type pkt struct {
	at  time.Time
	seq uint64
	b   []byte
}

type pktHeap []*pkt

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(*pkt)) }
func (h *pktHeap) Pop() any {
	old := *h
	p := old[len(old)-1]
	*h = old[:len(old)-1]
	return p
}
