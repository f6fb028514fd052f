package testharness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ProcSummary is the CPU and memory a process used during a run, read
// from /proc (Linux only).
type ProcSummary struct {
	PID       int     `json:"pid"`
	CPUMean   float64 `json:"cpu_mean_percent"` // of one core
	CPUPeak   float64 `json:"cpu_peak_percent"` // busiest second
	RSSPeakMB float64 `json:"rss_peak_mb"`
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times; 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// FindPID returns the one process whose name (/proc/PID/comm) is name.
func FindPID(name string) (int, error) {
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	var found []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if pid != os.Getpid() {
			found = append(found, pid)
		}
	}
	switch len(found) {
	case 0:
		return 0, fmt.Errorf("no process named %q", name)
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%d processes named %q (%v): give --pid", len(found), name, found)
}

// procCPU returns the process's user+system CPU time and resident set.
func procCPU(pid int) (cpu time.Duration, rssMB float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// f[0] is field 3 (state): utime is field 14, stime 15, rss 24 (pages).
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	rss, _ := strconv.ParseUint(f[21], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / clockTicks
	return cpu, float64(rss*uint64(os.Getpagesize())) / (1 << 20), nil
}

// procSampler reads a process's CPU and RSS once a second.
type procSampler struct {
	pid   int
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	cpu   []float64 // percent, per second
	rss   []float64 // MB, per second
	cpu0  time.Duration
}

func startProcSampler(pid int) (*procSampler, error) {
	c0, _, err := procCPU(pid)
	if err != nil {
		return nil, fmt.Errorf("server process %d: %w", pid, err)
	}
	p := &procSampler{pid: pid, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}), cpu0: c0}
	go p.run(c0)
	return p, nil
}

func (p *procSampler) run(prev time.Duration) {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			c, rss, err := procCPU(p.pid)
			if err != nil {
				return // the process ended
			}
			p.mu.Lock()
			p.cpu = append(p.cpu, 100*float64(c-prev)/float64(now.Sub(last)))
			p.rss = append(p.rss, rss)
			p.mu.Unlock()
			prev, last = c, now
		}
	}
}

// finish stops sampling and adds the summary and series to r.
func (p *procSampler) finish(r *Report) {
	close(p.stop)
	<-p.done
	c, rss, err := procCPU(p.pid)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &ProcSummary{PID: p.pid}
	if err == nil {
		s.CPUMean = 100 * float64(c-p.cpu0) / float64(time.Since(p.start))
		s.RSSPeakMB = rss
	}
	for i, v := range p.cpu {
		s.CPUPeak = max(s.CPUPeak, v)
		s.RSSPeakMB = max(s.RSSPeakMB, p.rss[i])
		if i < len(r.Series) {
			r.Series[i].CPU, r.Series[i].RSSMB = v, p.rss[i]
		}
	}
	r.Server = s
}
