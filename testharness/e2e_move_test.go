package testharness_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/codec"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/testharness"
)

// longestGap is the longest run of near-silence (5 ms blocks under a
// tenth of the tones' level) in what pc heard since mark.
func longestGap(pc *testharness.Call, mark int) time.Duration {
	s, rate := pc.Heard(mark)
	block := rate / 200
	run, longest := 0, 0
	for i := 0; i+block <= len(s); i += block {
		if dsp.RMS(s[i:i+block]) < 300 {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return time.Duration(longest) * 5 * time.Millisecond
}

// Drop-in/drop-out: A and B talk; Go code moves B, talking, into a room
// with C and D (all three hear each other), then back to A. Every hop is
// checked by the tones each phone hears, and B's longest silence across a
// move is at most 40 ms.
func TestMoveLegIntoRoomAndBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	callIDs := make(chan string, 1)
	dialErr := make(chan error, 1)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if c.User() == "room" {
			return c.Join(ctx, "r", framework.JoinOptions{})
		}
		callIDs <- c.ID()
		err := c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
		dialErr <- err
		if !errors.Is(err, framework.ErrLegMoved) {
			return err
		}
		<-ctx.Done() // B may come back: the caller stays on the call
		return nil
	}))
	h := testharness.New(t, srv)
	h.Own(b)
	phone := func(port int) *testharness.Phone {
		return h.Phone(testharness.PhoneOptions{RTPPortMin: port, RTPPortMax: port + 999})
	}
	c, d := phone(43000), phone(44000)
	callA, callB := callAndAnswer(h, "agent", phone(42000), b, 500, 800)
	aID := <-callIDs
	callB.ExpectInMix("B hears A", 500, 0.5)
	callA.ExpectInMix("A hears B", 800, 0.5)

	var room []*testharness.Call
	for i, p := range []*testharness.Phone{c, d} {
		pc := h.Call("room", testharness.HarnessCallOptions{Name: []string{"C", "D"}[i], Phone: p})
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{[]float64{1100, 1700}[i]}, Amplitude: 5000}))
		room = append(room, pc)
	}
	room[0].ExpectInMix("C hears D", 1700, 0.3)

	legB := srv.Leg(callB.Leg.ID())
	if legB == nil {
		t.Fatal("the server has no leg with B's Call-ID")
	}
	mark := callB.Mark()
	if err := legB.Move(ctx, framework.ToRoom("r"), framework.JoinOptions{}); err != nil {
		t.Fatalf("move B into the room: %v", err)
	}
	if err := <-dialErr; !errors.Is(err, framework.ErrLegMoved) {
		t.Fatalf("Dial returned %v, want ErrLegMoved", err)
	}
	if got := legB.Where(); got != "room:r" {
		t.Fatalf("B is at %q, want room:r", got)
	}
	callB.ExpectInMix("B in the room hears C", 1100, 0.2)
	callB.ExpectInMix("B in the room hears D", 1700, 0.2)
	room[0].ExpectInMix("C hears B", 800, 0.2)
	room[1].ExpectInMix("D hears B", 800, 0.2)
	if gap := longestGap(callB, mark); gap > 40*time.Millisecond {
		t.Errorf("B's longest silence moving into the room: %s, want <= 40ms", gap)
	} else {
		t.Logf("B's longest silence moving into the room: %s", gap)
	}
	if members, err := srv.RoomMembers(ctx, "r"); err != nil || len(members) != 3 {
		t.Errorf("room members: %v %v, want 3", members, err)
	}

	mark = callB.Mark()
	if err := legB.Move(ctx, framework.ToCall(aID), framework.JoinOptions{}); err != nil {
		t.Fatalf("move B back to A: %v", err)
	}
	callB.ExpectInMix("B back with A hears A", 500, 0.5)
	callA.ExpectInMix("A hears B again", 800, 0.5)
	if share := callB.ToneShare(callB.Mark()-8000, 1100); share > 0.05 {
		t.Errorf("B still hears the room after moving back: share %.2f", share)
	}
	if gap := longestGap(callB, mark); gap > 40*time.Millisecond {
		t.Errorf("B's longest silence moving back: %s, want <= 40ms", gap)
	} else {
		t.Logf("B's longest silence moving back: %s", gap)
	}
	if got := legB.Where(); got != "call:"+aID {
		t.Errorf("B is at %q, want call:%s", got, aID)
	}
	for _, pc := range append(room, callA, callB) {
		pc.End()
	}
	h.ExpectIdle()
}

// Whisper: supervisor S coaches agent A during A's call with customer C:
// A hears S, C does not; A and C still hear each other.
func TestWhisperCoachesOneLeg(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	agent := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999})
	callIDs := make(chan string, 2)
	srv := startServer(t, framework.Config{}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if c.User() == "supervisor" {
			if err := c.Answer(ctx); err != nil {
				return err
			}
			callIDs <- c.ID()
			<-ctx.Done()
			return nil
		}
		callIDs <- c.ID()
		return c.Dial(ctx, agent.URI("agent"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	h := testharness.New(t, srv)
	h.Own(agent)
	cust := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999})
	sup := h.Phone(testharness.PhoneOptions{RTPPortMin: 43000, RTPPortMax: 43999})
	callC, callA := callAndAnswer(h, "sales", cust, agent, 500, 900)
	callC.Name, callA.Name = "the customer", "the agent"
	customerCall := <-callIDs
	callA.ExpectInMix("agent hears customer", 500, 0.5)

	callS := h.Call("supervisor", testharness.HarnessCallOptions{Name: "the supervisor", Phone: sup})
	<-callIDs
	callS.Play(audio.NewTone(audio.Tone{Freqs: []float64{1400}, Amplitude: 5000}))
	err := srv.Move(ctx, callS.Leg.ID(), framework.ToCall(customerCall),
		framework.JoinOptions{Mode: framework.ModeWhisper, Coach: callA.Leg.ID()})
	if err != nil {
		t.Fatalf("move the supervisor in: %v", err)
	}
	callA.ExpectInMix("agent hears the supervisor", 1400, 0.15)
	callA.ExpectInMix("agent still hears the customer", 500, 0.15)
	callC.ExpectInMix("customer still hears the agent", 900, 0.2)
	callS.ExpectInMix("supervisor hears the customer", 500, 0.15)
	callS.ExpectInMix("supervisor hears the agent", 900, 0.15)
	callC.ExpectAbsent("the customer hears the whisper", 1400, 0.02, 1200*time.Millisecond)

	// Barge: now everyone hears the supervisor.
	if err := srv.Move(ctx, callS.Leg.ID(), framework.ToCall(customerCall), framework.JoinOptions{Mode: framework.ModeBarge}); err != nil {
		t.Fatalf("barge: %v", err)
	}
	callC.ExpectInMix("customer hears the barging supervisor", 1400, 0.15)
	for _, pc := range []*testharness.Call{callC, callA, callS} {
		pc.End()
	}
	h.ExpectIdle()
}

// A bridged leg renegotiates from PCMU to PCMA with a re-INVITE: the call
// actor hears of it and bridges by transcoding, so the other side keeps
// hearing the right tone (forwarding would relabel A-law as µ-law).
func TestReinviteCodecChangeRebridges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	g711 := []codec.CodecSpec{mustCodec(t, "PCMU"), mustCodec(t, "PCMA")}
	b := newPhoneWith(t, testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, Codecs: g711})
	events := make(chan framework.Event, 64)
	srv := startServer(t, framework.Config{OnEvent: func(e framework.Event) {
		select {
		case events <- e:
		default:
		}
	}}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, b.URI("bob"), framework.DialOptions{Timeout: 10 * time.Second})
	}))
	h := testharness.New(t, srv)
	h.Own(b)
	a := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999, Codecs: g711[:1]})
	callA, callB := callAndAnswer(h, "bob", a, b, 440, 1000)
	callA.ExpectInMix("A hears B (both PCMU)", 1000, 0.5)

	if err := callB.Leg.Reoffer(ctx, "sendrecv", g711[1:]); err != nil {
		t.Fatalf("B's re-INVITE to PCMA: %v", err)
	}
	if got := callB.Leg.Endpoint().Config().Codec.Name; got != "PCMA" {
		t.Fatalf("B's codec after the re-INVITE: %s, want PCMA", got)
	}
	time.Sleep(300 * time.Millisecond)
	callA.ExpectInMix("A hears B after B switched to PCMA", 1000, 0.5)
	// A-law decoded as µ-law still has a 1 kHz fundamental, but at a
	// wrong, distorted level (measured: RMS ~12,500 and share 0.77 against
	// ~3,400 and 0.90 for the 5,000-peak tone): check both.
	from := callA.Mark() - 8000
	s, _ := callA.Heard(from)
	share, level := callA.ToneShare(from, 1000), dsp.RMS(s)
	if share < 0.85 || level < 2500 || level > 4500 {
		t.Errorf("A hears B's tone distorted after B switched to PCMA: share %.2f, RMS %.0f (want >= 0.85 and ~3,500)", share, level)
	}
	callB.ExpectInMix("B hears A after switching to PCMA", 440, 0.5)
	callA.End()
	h.ExpectIdle()
}

// callAndAnswer calls user at the server from phone from (call "A") and
// waits for phone to to answer the call the flow dials (call "B"); each
// then plays its tone (5,000 peak), fromHz and toHz.
func callAndAnswer(h *testharness.Harness, user string, from, to *testharness.Phone, fromHz, toHz float64) (a, b *testharness.Call) {
	a = h.Call(user, testharness.HarnessCallOptions{Name: "A", Phone: from})
	b = h.ExpectIncoming(to, "B")
	a.Play(audio.NewTone(audio.Tone{Freqs: []float64{fromHz}, Amplitude: 5000}))
	b.Play(audio.NewTone(audio.Tone{Freqs: []float64{toHz}, Amplitude: 5000}))
	return a, b
}

func mustCodec(t *testing.T, name string) codec.CodecSpec {
	t.Helper()
	c, ok := codec.LookupCodec(name, 8000)
	if !ok {
		t.Fatalf("no codec %s", name)
	}
	return c
}
