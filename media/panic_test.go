package media

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/transport"
)

type panicSource struct{ after, n int }

func (p *panicSource) ReadFrame(f *Frame) error {
	if p.n++; p.n > p.after {
		panic("boom")
	}
	clear(f.Samples)
	return nil
}

type panicSink struct {
	mu sync.Mutex
	n  int
}

func (p *panicSink) WriteFrame(*Frame) error {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	panic("boom")
}

// A Source, a Sink and a DTMF callback that panic on the shared media
// goroutines are recovered: the endpoint reports each once (OnPanic),
// stops calling the culprit, and both endpoints keep running.
func TestEndpointRecoversUserPanics(t *testing.T) {
	a, b := endpointPair(t, codec.Codecs()[0])
	var mu sync.Mutex
	var got []*PanicError
	record := func(pe *PanicError) { mu.Lock(); got = append(got, pe); mu.Unlock() }
	a.OnPanic(record)
	b.OnPanic(record)
	sink := &panicSink{}
	b.SetSink(sink)
	b.OnDTMF(func(DTMFEvent) { panic("dtmf boom") })
	a.Start()
	b.Start()

	done := make(chan error, 1)
	a.Play(&panicSource{after: 5}, func(err error) { done <- err })
	var pe *PanicError
	select {
	case err := <-done:
		if !errors.As(err, &pe) || pe.Where != PanicSource || pe.Value != "boom" || len(pe.Stack) == 0 {
			t.Fatalf("playback ended with %v, want a source PanicError", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("playback did not end")
	}
	// The endpoint still plays: the sink panics on the first frame of it.
	a.Play(sine(1000, time.Second, 0), nil)
	if err := a.SendDTMF('5', 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ok := waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
	time.Sleep(200 * time.Millisecond) // more frames and packets: no more reports
	mu.Lock()
	defer mu.Unlock()
	if !ok || len(got) != 3 {
		t.Fatalf("%d panics reported, want 3 (source, sink, dtmf once each)", len(got))
	}
	seen := map[PanicWhere]bool{}
	for _, pe := range got {
		seen[pe.Where] = true
	}
	if !seen[PanicSource] || !seen[PanicSink] || !seen[PanicDTMF] {
		t.Fatalf("reported %v", seen)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.n != 1 {
		t.Fatalf("the panicking sink was called %d times", sink.n)
	}
}

func TestPanicWhereString(t *testing.T) {
	for w, want := range map[PanicWhere]string{PanicSource: "source", PanicSink: "sink", PanicDTMF: "dtmf callback", 9: "PanicWhere(9)"} {
		if w.String() != want {
			t.Errorf("%d: %q, want %q", w, w.String(), want)
		}
	}
}

type zeroSource struct{}

func (zeroSource) ReadFrame(f *Frame) error { return nil }

// BenchmarkReadSourceGuarded is the price of recovering panics around a
// Source on the media path, next to BenchmarkReadSourceDirect.
func BenchmarkReadSourceGuarded(b *testing.B) {
	e := &Endpoint{}
	f := NewFrame(8000)
	var src Source = zeroSource{}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.readSource(src, f)
	}
}

//go:noinline
func readDirect(src Source, f *Frame) error { return src.ReadFrame(f) }

func BenchmarkReadSourceDirect(b *testing.B) {
	f := NewFrame(8000)
	var src Source = zeroSource{}
	b.ReportAllocs()
	for b.Loop() {
		_ = readDirect(src, f)
	}
}

// BenchmarkEndpointSendTick is one 20 ms tick of an endpoint playing a
// tone (read, encode; no peer address, so no syscall).
func BenchmarkEndpointSendTick(b *testing.B) {
	pool, err := transport.NewPortPool(42100, 42199)
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEndpoint(pool, netip.MustParseAddr("127.0.0.1"), EndpointOptions{NoIdleSilence: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	spec := codec.Codecs()[0]
	e.Configure(StreamConfig{Codec: spec, PayloadType: spec.PayloadType})
	e.initSender()
	e.Play(sine(1000, 0, 0), nil)
	e.SetSink(SinkFunc(func(*Frame) error { return nil }))
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e.recvTick(now)
		e.sendTick(now)
	}
}
