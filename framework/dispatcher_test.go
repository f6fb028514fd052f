package framework

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/testharness"
)

// The actor dispatcher runs every scheduled run exactly once, never makes
// one wait for another (runs that block do not hold up the rest, beyond
// maxWorkers too), reuses its idle workers rather than starting
// goroutines, lets idle workers go after idleExit, and after close still
// runs what it is given.
func TestActorDispatcher(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     int
		blocked int // runs that block until released, scheduled first
		runs    int // quick runs scheduled after them
	}{
		{"idle workers reused", 4, 0, 200},
		{"blocked runs below the cap", 4, 3, 50},
		{"blocked runs beyond the cap", 2, 5, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newActorDispatcher(300, tc.max, 200*time.Millisecond)
			release := make(chan struct{})
			var blocked sync.WaitGroup
			blocked.Add(tc.blocked)
			for range tc.blocked {
				d.Schedule(func() { blocked.Done(); <-release })
			}
			blocked.Wait() // all running at once, whatever the cap
			var wg sync.WaitGroup
			var mu sync.Mutex
			ran := 0
			step := make(chan struct{}, 1)
			for i := range tc.runs {
				wg.Add(1)
				d.Schedule(func() {
					mu.Lock()
					ran++
					mu.Unlock()
					wg.Done()
					step <- struct{}{}
				})
				// One at a time: at most one worker is between runs, the
				// others wait for work.
				select {
				case <-step:
				case <-time.After(5 * time.Second):
					t.Fatalf("run %d never ran", i)
				}
			}
			wg.Wait()
			if ran != tc.runs {
				t.Fatalf("%d runs, want %d", ran, tc.runs)
			}
			if n := int(d.workers.Load()); n > tc.max {
				t.Fatalf("%d workers, cap %d", n, tc.max)
			}
			// Workers stay while runs keep coming: never more started
			// than the cap allows (blocked runs beyond it got goroutines).
			if n := d.started.Load(); n > int64(tc.max) {
				t.Fatalf("%d workers started for %d runs, cap %d: idle workers not reused", n, tc.runs+tc.blocked, tc.max)
			}
			if n := d.spilled.Load(); tc.blocked == 0 && n != 0 {
				t.Fatalf("%d of %d runs, one at a time, on plain goroutines: idle workers not used", n, tc.runs)
			}
			if n := d.spilled.Load(); tc.blocked > tc.max && n == 0 {
				t.Fatalf("no run on a plain goroutine with %d runs blocked and %d workers", tc.blocked, tc.max)
			}
			close(release)
			testharness.WaitUntil(t, 5*time.Second, "idle workers leaving", func() bool { return d.workers.Load() == 0 })
			d.close()
			done := make(chan struct{})
			d.Schedule(func() { close(done) })
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a run scheduled after close never ran")
			}
		})
	}
	// close sends idle workers home at once.
	before := runtime.NumGoroutine()
	d := newActorDispatcher(300, 8, time.Hour)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		d.Schedule(func() { wg.Done(); time.Sleep(10 * time.Millisecond) })
	}
	wg.Wait()
	d.close()
	testharness.WaitUntil(t, 5*time.Second, "workers gone after close", func() bool {
		return d.workers.Load() == 0 && runtime.NumGoroutine() <= before
	})
}
