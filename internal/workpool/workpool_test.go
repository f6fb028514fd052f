package workpool

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// A pool runs every function exactly once, never makes
// one wait for another (functions that block do not hold up the rest, beyond
// maxWorkers too), reuses its idle workers rather than starting
// goroutines, lets idle workers go after idleExit, and after close still
// runs what it is given.
func TestPool(t *testing.T) {
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
			d := New(tc.max, 200*time.Millisecond)
			release := make(chan struct{})
			var blocked sync.WaitGroup
			blocked.Add(tc.blocked)
			for range tc.blocked {
				d.Go(func() { blocked.Done(); <-release })
			}
			blocked.Wait() // all running at once, whatever the cap
			var wg sync.WaitGroup
			var mu sync.Mutex
			ran := 0
			step := make(chan struct{}, 1)
			for i := range tc.runs {
				wg.Add(1)
				d.Go(func() {
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
			if n := d.Workers(); n > tc.max {
				t.Fatalf("%d workers, cap %d", n, tc.max)
			}
			// Workers stay while runs keep coming: never more started
			// than the cap allows (blocked runs beyond it got goroutines).
			if n := d.Started(); n > int64(tc.max) {
				t.Fatalf("%d workers started for %d runs, cap %d: idle workers not reused", n, tc.runs+tc.blocked, tc.max)
			}
			if n := d.Spilled(); tc.blocked == 0 && n != 0 {
				t.Fatalf("%d of %d runs, one at a time, on plain goroutines: idle workers not used", n, tc.runs)
			}
			if n := d.Spilled(); tc.blocked > tc.max && n == 0 {
				t.Fatalf("no run on a plain goroutine with %d runs blocked and %d workers", tc.blocked, tc.max)
			}
			close(release)
			waitUntil(t, 5*time.Second, "idle workers leaving", func() bool { return d.Workers() == 0 })
			d.Close()
			done := make(chan struct{})
			d.Go(func() { close(done) })
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a run scheduled after close never ran")
			}
		})
	}
	// close sends idle workers home at once.
	before := runtime.NumGoroutine()
	d := New(8, time.Hour)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		d.Go(func() { wg.Done(); time.Sleep(10 * time.Millisecond) })
	}
	wg.Wait()
	d.Close()
	waitUntil(t, 5*time.Second, "workers gone after close", func() bool {
		return d.Workers() == 0 && runtime.NumGoroutine() <= before
	})
}

// waitUntil polls cond every 10 ms for up to limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
