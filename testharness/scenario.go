package testharness

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Arrival is how a simulation starts calls.
type Arrival uint8

const (
	// ArrivalRate starts calls evenly spaced at Rate per second.
	ArrivalRate Arrival = iota
	// ArrivalPoisson starts calls as a Poisson process of mean Rate per
	// second (exponential gaps drawn from the scenario's seed).
	ArrivalPoisson
	// ArrivalConcurrent keeps Concurrent calls up, starting a new one as
	// soon as one ends.
	ArrivalConcurrent
)

func (a Arrival) String() string {
	switch a {
	case ArrivalRate:
		return "rate"
	case ArrivalPoisson:
		return "poisson"
	case ArrivalConcurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Arrival(%d)", uint8(a))
}

// StepKind is one thing a simulated caller does.
type StepKind uint8

const (
	// StepExpectSound waits up to Timeout for anything louder than silence
	// (a prompt).
	StepExpectSound StepKind = iota
	// StepExpectTone waits up to Timeout for a tone of Freq Hz.
	StepExpectTone
	// StepExpectSilence waits up to Timeout for Duration of silence.
	StepExpectSilence
	// StepPress sends Digits (RFC 4733, or in-band without telephone-event).
	StepPress
	// StepPlayTone sends a tone of Freq Hz for Duration (in the background).
	StepPlayTone
	// StepWait does nothing for Duration.
	StepWait
	// StepHangup ends the call.
	StepHangup
)

func (k StepKind) String() string {
	switch k {
	case StepExpectSound:
		return "expect sound"
	case StepExpectTone:
		return "expect tone"
	case StepExpectSilence:
		return "expect silence"
	case StepPress:
		return "press"
	case StepPlayTone:
		return "play tone"
	case StepWait:
		return "wait"
	case StepHangup:
		return "hangup"
	}
	return fmt.Sprintf("StepKind(%d)", uint8(k))
}

// Step is one action of a simulated caller's script.
type Step struct {
	Kind     StepKind
	Freq     float64
	Digits   string
	Duration time.Duration
	Timeout  time.Duration
	// Name labels the step's check in results ("menu", "tone"); default
	// the step's text.
	Name string
	// Line is where the step is in its scenario file (0 for Go code).
	Line int
}

// hasChecks says whether any step verifies what the caller hears.
func (s *Scenario) hasChecks() bool {
	for _, st := range s.Steps {
		if st.IsCheck() {
			return true
		}
	}
	return false
}

// IsCheck says whether the step verifies something the caller hears.
func (s Step) IsCheck() bool {
	return s.Kind == StepExpectSound || s.Kind == StepExpectTone || s.Kind == StepExpectSilence
}

func (s Step) String() string {
	if s.Name != "" {
		return s.Name
	}
	switch s.Kind {
	case StepExpectTone:
		return fmt.Sprintf("tone %.0f Hz", s.Freq)
	case StepExpectSound:
		return "sound"
	case StepExpectSilence:
		return fmt.Sprintf("silence %s", s.Duration)
	case StepPress:
		return "press " + s.Digits
	case StepPlayTone:
		return fmt.Sprintf("play %.0f Hz", s.Freq)
	case StepWait:
		return "wait " + s.Duration.String()
	}
	return s.Kind.String()
}

// Hold is a call duration distribution: Fixed, or uniform between Min and
// Max, or exponential with mean Mean.
type Hold struct {
	Min, Max time.Duration // uniform when Max > Min; fixed Min otherwise
	Mean     time.Duration // exponential when set
}

// Scenario describes a caller population: how calls arrive, how long they
// last and what every caller does and must hear.
type Scenario struct {
	// Target is the SIP URI every caller dials.
	Target     string
	Arrival    Arrival
	Rate       float64 // calls per second (ArrivalRate, ArrivalPoisson)
	Concurrent int     // calls kept up (ArrivalConcurrent)
	// Ramp is how long the rate (or the number of concurrent calls)
	// climbs linearly from zero to its target.
	Ramp time.Duration
	// Duration is how long new calls start; calls then finish.
	Duration time.Duration
	// Hold is how long a call lasts from answer unless a step hangs up
	// first; steps that outlast it run to their end. Zero: 10 s.
	Hold Hold
	// MaxCalls caps concurrent calls (0: unlimited); arrivals beyond it
	// are counted as failed "max-calls".
	MaxCalls int
	// SetupTimeout bounds call set-up (0: 10 s).
	SetupTimeout time.Duration
	// NoAudio skips listening: the calls still send and receive RTP but
	// nothing is analysed and expect steps are skipped.
	NoAudio bool
	// Downlink and Uplink impair each call's RTP (zero: none).
	Downlink, Uplink Impairment
	// Seed drives arrivals and hold times.
	Seed  uint64
	Steps []Step
	// Browsers makes some or all callers virtual browsers (WebRTC over
	// the server's /ws) instead of SIP phones.
	Browsers BrowserCallers
}

// BrowserCallers is the browser share of a scenario's callers. Each
// browser caller opens its own WebSocket, logs in with a token, calls To
// over WebRTC (ICE, DTLS-SRTP, Opus or PCMU) and runs the same steps as a
// SIP caller; DTMF goes as the page's "dtmf" message.
type BrowserCallers struct {
	// Share is the fraction of callers that are browsers, 0..1 (1: all).
	// Browsers are spread evenly: caller k is one when floor(k·Share)
	// grows at k.
	Share float64
	// WS is the server's WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
	WS string
	// To is the route or user the browsers call; default the user part
	// of Target.
	To string
}

// browser says whether caller id (from 1) is a browser.
func (b BrowserCallers) browser(id int) bool {
	if b.Share <= 0 {
		return false
	}
	if b.Share >= 1 {
		return true
	}
	return math.Floor(float64(id)*b.Share) > math.Floor(float64(id-1)*b.Share)
}

// BrowserTo is what browser callers call: To, or the user part of Target.
func (s *Scenario) BrowserTo() string {
	if s.Browsers.To != "" {
		return s.Browsers.To
	}
	t := s.Target
	if i := strings.IndexByte(t, ':'); i >= 0 {
		t = t[i+1:]
	}
	if i := strings.IndexByte(t, '@'); i >= 0 {
		return t[:i]
	}
	return ""
}

// Validate reports what makes s unusable.
func (s *Scenario) Validate() error {
	b := s.Browsers
	switch {
	case b.Share < 0 || b.Share > 1:
		return fmt.Errorf("browser share %v must be within 0..1", b.Share)
	case b.Share > 0 && !strings.HasPrefix(b.WS, "ws://") && !strings.HasPrefix(b.WS, "wss://"):
		return fmt.Errorf("browser callers need the server's WebSocket URL (ws://host:port/ws), not %q", b.WS)
	case b.Share > 0 && s.BrowserTo() == "":
		return fmt.Errorf("browser callers need a route or user to call (a target sip:NAME@host, or browsers ... to NAME)")
	case s.Target == "" && b.Share < 1:
		return fmt.Errorf("no target (a SIP URI to call)")
	case s.Arrival == ArrivalConcurrent && s.Concurrent <= 0:
		return fmt.Errorf("concurrent calls must be > 0")
	case s.Arrival != ArrivalConcurrent && (s.Rate <= 0 || s.Rate > 1000):
		return fmt.Errorf("call rate %v must be in (0, 1000] calls/s", s.Rate)
	case s.Duration <= 0:
		return fmt.Errorf("duration must be > 0")
	case s.Ramp < 0 || s.Ramp > s.Duration:
		return fmt.Errorf("ramp %s must be within the duration %s", s.Ramp, s.Duration)
	}
	if err := s.Downlink.Validate(); err != nil {
		return err
	}
	return s.Uplink.Validate()
}

// ScenarioError is a scenario file's error at a line.
type ScenarioError struct {
	File string
	Line int
	Err  error
}

func (e *ScenarioError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *ScenarioError) Unwrap() error { return e.Err }

// LoadScenario reads a scenario file (see ParseScenario).
func LoadScenario(path string) (*Scenario, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	defer f.Close()
	return ParseScenario(path, f)
}

// ParseScenario reads the line format of a scenario; name labels errors.
// One statement per line, '#' starts a comment, durations are Go's
// (500ms, 10s, 2m):
//
//	target sip:ivr@127.0.0.1:5060   SIP URI every caller dials
//	browsers 30% ws://127.0.0.1:8080/ws [to NAME]   this share of the callers
//	                                are virtual browsers calling NAME (default the
//	                                target's user) over WebRTC; 100%: no SIP target needed
//	rate 2 | poisson 2 | concurrent 20   arrivals (calls/s, or calls kept up)
//	ramp 10s                        climb to the rate over this time
//	duration 60s                    how long new calls start
//	hold 20s | hold 10s-30s | hold exp 20s   call length (fixed, uniform, exponential)
//	max-calls 50                    concurrent call cap
//	setup-timeout 10s               set-up deadline per call
//	audio off                       send/receive RTP but analyse nothing
//	seed 7                          arrivals, hold times and impairments
//	downlink loss 5% jitter 40ms    impair server→caller RTP (also: burst N,
//	uplink latency 50ms             latency, reorder P%, duplicate P%, bandwidth Nkbps)
//
// and then the caller's steps, in order:
//
//	expect sound 5s [as NAME]       hear something within 5 s (a prompt)
//	expect tone 1000 5s [as NAME]   hear a 1000 Hz tone within 5 s
//	expect silence 1s 5s [as NAME]  hear 1 s of silence within 5 s
//	press 1#                        send DTMF
//	play tone 440 2s                send a tone (in the background)
//	wait 2s
//	hangup
func ParseScenario(name string, r io.Reader) (*Scenario, error) {
	s := &Scenario{Arrival: ArrivalRate, Rate: 1, Duration: 60 * time.Second, Seed: 1}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64*1024)
	line := 0
	var down, up *Impairment
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if err := s.statement(f, line, &down, &up); err != nil {
			return nil, &ScenarioError{File: name, Line: line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ScenarioError{File: name, Line: line + 1, Err: err}
	}
	if down != nil {
		s.Downlink = *down
		s.Downlink.Seed = s.Seed
	}
	if up != nil {
		s.Uplink = *up
		s.Uplink.Seed = s.Seed + 1
	}
	if err := s.Validate(); err != nil {
		return nil, &ScenarioError{File: name, Line: line, Err: err}
	}
	return s, nil
}

func (s *Scenario) statement(f []string, line int, down, up **Impairment) error {
	args := f[1:]
	want := func(n int, usage string) error {
		if len(args) != n {
			return fmt.Errorf("%s: want %q", f[0], usage)
		}
		return nil
	}
	var err error
	switch f[0] {
	case "target":
		if err = want(1, "target sip:user@host:port"); err == nil {
			if !strings.HasPrefix(args[0], "sip:") && !strings.HasPrefix(args[0], "sips:") {
				return fmt.Errorf("target %q is not a sip: URI", args[0])
			}
			s.Target = args[0]
		}
	case "rate", "poisson":
		if err = want(1, f[0]+" CALLS_PER_SECOND"); err == nil {
			s.Arrival = ArrivalRate
			if f[0] == "poisson" {
				s.Arrival = ArrivalPoisson
			}
			s.Rate, err = positiveFloat(args[0])
		}
	case "concurrent":
		if err = want(1, "concurrent N"); err == nil {
			s.Arrival = ArrivalConcurrent
			s.Concurrent, err = positiveInt(args[0])
		}
	case "ramp":
		if err = want(1, "ramp DURATION"); err == nil {
			s.Ramp, err = duration(args[0])
		}
	case "duration":
		if err = want(1, "duration DURATION"); err == nil {
			s.Duration, err = duration(args[0])
		}
	case "setup-timeout":
		if err = want(1, "setup-timeout DURATION"); err == nil {
			s.SetupTimeout, err = duration(args[0])
		}
	case "max-calls":
		if err = want(1, "max-calls N"); err == nil {
			s.MaxCalls, err = positiveInt(args[0])
		}
	case "seed":
		if err = want(1, "seed N"); err == nil {
			s.Seed, err = strconv.ParseUint(args[0], 10, 64)
		}
	case "audio":
		if err = want(1, "audio on|off"); err == nil {
			switch args[0] {
			case "on":
				s.NoAudio = false
			case "off":
				s.NoAudio = true
			default:
				err = fmt.Errorf("audio %q: want on or off", args[0])
			}
		}
	case "hold":
		s.Hold, err = parseHold(args)
	case "downlink", "uplink":
		var im Impairment
		if im, err = ParseImpairment(strings.Join(args, " ")); err == nil {
			if f[0] == "downlink" {
				*down = &im
			} else {
				*up = &im
			}
		}
	case "browsers":
		const usage = "browsers PERCENT% ws://HOST:PORT/ws [to NAME]"
		if len(args) != 2 && (len(args) != 4 || args[2] != "to") {
			return fmt.Errorf("browsers: want %q", usage)
		}
		var share float64
		if share, err = percent(args[0]); err != nil {
			return fmt.Errorf("browsers: %w", err)
		}
		if !strings.HasSuffix(args[0], "%") {
			return fmt.Errorf("browsers: %q: want a percentage such as 30%% or 100%%", args[0])
		}
		if !strings.HasPrefix(args[1], "ws://") && !strings.HasPrefix(args[1], "wss://") {
			return fmt.Errorf("browsers: %q is not a ws:// or wss:// URL", args[1])
		}
		s.Browsers = BrowserCallers{Share: share, WS: args[1]}
		if len(args) == 4 {
			s.Browsers.To = args[3]
		}
	case "expect", "press", "play", "wait", "hangup":
		var st Step
		if st, err = parseStep(f); err == nil {
			st.Line = line
			s.Steps = append(s.Steps, st)
		}
	default:
		err = fmt.Errorf("unknown statement %q (known: target, browsers, rate, poisson, concurrent, ramp, duration, hold, max-calls, setup-timeout, audio, seed, downlink, uplink, expect, press, play, wait, hangup)", f[0])
	}
	return err
}

func parseHold(args []string) (Hold, error) {
	const usage = `want "hold 20s", "hold 10s-30s" or "hold exp 20s"`
	switch {
	case len(args) == 2 && args[0] == "exp":
		d, err := duration(args[1])
		return Hold{Mean: d}, err
	case len(args) == 1:
		if lo, hi, ok := strings.Cut(args[0], "-"); ok {
			a, err := duration(lo)
			if err != nil {
				return Hold{}, err
			}
			b, err := duration(hi)
			if err != nil {
				return Hold{}, err
			}
			if b < a {
				return Hold{}, fmt.Errorf("hold %s: upper bound below lower", args[0])
			}
			return Hold{Min: a, Max: b}, nil
		}
		d, err := duration(args[0])
		return Hold{Min: d}, err
	}
	return Hold{}, fmt.Errorf("hold: %s", usage)
}

func parseStep(f []string) (Step, error) {
	var st Step
	// "as NAME" at the end names a check.
	if n := len(f); n >= 3 && f[n-2] == "as" {
		st.Name, f = f[n-1], f[:n-2]
	}
	var err error
	switch {
	case f[0] == "hangup" && len(f) == 1:
		st.Kind = StepHangup
	case f[0] == "wait" && len(f) == 2:
		st.Kind = StepWait
		st.Duration, err = duration(f[1])
	case f[0] == "press" && len(f) == 2:
		st.Kind, st.Digits = StepPress, f[1]
		for _, d := range f[1] {
			if !strings.ContainsRune("0123456789*#ABCD", d) {
				return st, fmt.Errorf("press: %q is not a DTMF digit", d)
			}
		}
	case f[0] == "play" && len(f) == 4 && f[1] == "tone":
		st.Kind = StepPlayTone
		if st.Freq, err = frequency(f[2]); err == nil {
			st.Duration, err = duration(f[3])
		}
	case f[0] == "expect" && len(f) == 3 && f[1] == "sound":
		st.Kind = StepExpectSound
		st.Timeout, err = duration(f[2])
	case f[0] == "expect" && len(f) == 4 && f[1] == "tone":
		st.Kind = StepExpectTone
		if st.Freq, err = frequency(f[2]); err == nil {
			st.Timeout, err = duration(f[3])
		}
	case f[0] == "expect" && len(f) == 4 && f[1] == "silence":
		st.Kind = StepExpectSilence
		if st.Duration, err = duration(f[2]); err == nil {
			st.Timeout, err = duration(f[3])
		}
	default:
		return st, fmt.Errorf("bad step %q (want: expect sound T | expect tone HZ T | expect silence D T [as NAME], press DIGITS, play tone HZ D, wait D, hangup)", strings.Join(f, " "))
	}
	return st, err
}

// ParseImpairment reads "loss 5% burst 3 latency 20ms jitter 40ms reorder
// 1% duplicate 1% bandwidth 64kbps" (any subset, any order).
func ParseImpairment(s string) (Impairment, error) {
	var im Impairment
	f := strings.Fields(s)
	if len(f)%2 != 0 {
		return im, fmt.Errorf("impairment %q: want KEY VALUE pairs", s)
	}
	for i := 0; i < len(f); i += 2 {
		k, v := f[i], f[i+1]
		var err error
		switch k {
		case "loss":
			im.Loss, err = percent(v)
		case "burst":
			im.BurstLen, err = positiveFloat(v)
		case "latency":
			im.Latency, err = duration(v)
		case "jitter":
			im.Jitter, err = duration(v)
		case "reorder":
			im.Reorder, err = percent(v)
		case "duplicate":
			im.Duplicate, err = percent(v)
		case "bandwidth":
			var n int
			n, err = positiveInt(strings.TrimSuffix(v, "kbps"))
			im.BandwidthKbps = n
		case "seed":
			im.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			err = fmt.Errorf("unknown impairment %q (known: loss, burst, latency, jitter, reorder, duplicate, bandwidth, seed)", k)
		}
		if err != nil {
			return im, fmt.Errorf("%s: %w", k, err)
		}
	}
	return im, im.Validate()
}

func duration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 500ms or 10s", s)
	}
	if d < 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("duration %s out of range 0..24h", d)
	}
	return d, nil
}

func positiveFloat(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || v > 1e6 {
		return 0, fmt.Errorf("%q is not a positive number", s)
	}
	return v, nil
}

func positiveInt(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, fmt.Errorf("%q is not a positive whole number", s)
	}
	return v, nil
}

func frequency(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "Hz"), 64)
	if err != nil || v < 50 || v > 3900 {
		return 0, fmt.Errorf("%q is not a frequency in 50..3900 Hz", s)
	}
	return v, nil
}

func percent(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || v < 0 || v > 100 {
		return 0, fmt.Errorf("%q is not a percentage 0..100", s)
	}
	return v / 100, nil
}
