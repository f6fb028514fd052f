package framework

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// A leg's reports reach the leg actor that holds it now: what comes while
// it is between two holders (detached, the next actor not yet spawned)
// waits, and the next actor gets it first and in order; a detach by an
// actor that no longer holds the leg changes nothing.
func TestLegEntryHandsReportsToTheNextHolder(t *testing.T) {
	system := actor.NewActorSystem()
	root := system.Root
	var mu sync.Mutex
	got := map[string][]string{}
	recorder := func(name string) *actor.PID {
		return root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			if m, ok := c.Message().(*legChat); ok {
				mu.Lock()
				got[name] = append(got[name], m.Text)
				mu.Unlock()
			}
		}))
	}
	e := &legEntry{id: "leg-1"}
	e.deliver(root, &legChat{Text: "before any holder"})
	first := recorder("first")
	if !e.attach(root, first) {
		t.Fatal("the first attach did not ask for the leg's callbacks")
	}
	e.deliver(root, &legChat{Text: "one"})
	e.detach(first)
	e.deliver(root, &legChat{Text: "between"})
	e.deliver(root, &legChat{Text: "holders"})
	second := recorder("second")
	if e.attach(root, second) {
		t.Fatal("a second attach asked for the callbacks again")
	}
	e.detach(first) // late: no longer the holder
	e.deliver(root, &legChat{Text: "two"})
	want := map[string][]string{"first": {"before any holder", "one"}, "second": {"between", "holders", "two"}}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		done := slices.Equal(got["first"], want["first"]) && slices.Equal(got["second"], want["second"])
		mu.Unlock()
		if done {
			return
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Fatalf("delivered %v, want %v", got, want)
}

// Between holders at most maxPendingLegMessages reports wait.
func TestLegEntryPendingIsBounded(t *testing.T) {
	e := &legEntry{id: "leg-1"}
	root := actor.NewActorSystem().Root
	for range 3 * maxPendingLegMessages {
		e.deliver(root, &legChat{Text: "x"})
	}
	if n := len(e.pending); n != maxPendingLegMessages {
		t.Fatalf("%d reports kept, want %d", n, maxPendingLegMessages)
	}
}
