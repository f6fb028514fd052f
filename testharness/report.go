package testharness

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of a simulation run: per-call results, totals and
// per-second series.
type Report struct {
	Target    string        `json:"target"`
	Start     time.Time     `json:"start"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	Attempted int           `json:"attempted"`
	Answered  int           `json:"answered"`
	// Completed calls were answered and heard everything they expected.
	Completed int `json:"completed"`
	// Failed counts calls by reason ("setup timeout", "SIP 486 Busy Here",
	// "not heard: tone 1000 Hz", ...).
	Failed map[string]int `json:"failed"`
	// Setup latency percentiles over answered calls.
	SetupP50, SetupP95, SetupP99, SetupMax time.Duration      `json:"-"`
	SetupMs                                map[string]float64 `json:"setup_ms"`
	// First-audio percentiles (INVITE or the browser's "call" message to
	// the first RTP packet) over calls that received any.
	FirstAudioP50, FirstAudioP95, FirstAudioP99, FirstAudioMax time.Duration      `json:"-"`
	FirstAudioMs                                               map[string]float64 `json:"first_audio_ms,omitempty"`
	// Transports breaks the totals down by what carried the calls
	// ("sip", "webrtc"), for runs with browser callers.
	Transports map[string]*TransportTotals `json:"transports,omitempty"`
	// WS is the WebSocket URL browser callers used ("" without browsers)
	// and BrowserTo the route or user they called.
	WS        string `json:"ws,omitempty"`
	BrowserTo string `json:"browser_to,omitempty"`
	// Checks counts each expect step's outcomes by name: [heard, not heard].
	Checks map[string][2]int `json:"checks"`
	// Mean received loss, jitter and MOS over answered calls with RTP.
	LossPercent float64       `json:"loss_percent"`
	Jitter      time.Duration `json:"jitter_ns"`
	MOS         float64       `json:"mos"`
	MOSMin      float64       `json:"mos_min"`
	// Server is the CPU and memory of the server process, if sampled.
	Server *ProcSummary `json:"server,omitempty"`
	Series []Second     `json:"series"`
	Calls  []CallResult `json:"calls"`
}

// TransportTotals are a run's totals for the calls of one transport.
type TransportTotals struct {
	Attempted int `json:"attempted"`
	Answered  int `json:"answered"`
	Completed int `json:"completed"`
	// Percentiles in ms ("p50", "p95", "p99", "max") of set-up, of first
	// audio and (browsers) of the WebSocket login.
	SetupMs      map[string]float64 `json:"setup_ms"`
	FirstAudioMs map[string]float64 `json:"first_audio_ms,omitempty"`
	LoginMs      map[string]float64 `json:"login_ms,omitempty"`
	MOS          float64            `json:"mos"`
}

// msPercentiles sorts ds and returns its p50, p95, p99 and max in ms
// (nil when empty).
func msPercentiles(ds []time.Duration) map[string]float64 {
	if len(ds) == 0 {
		return nil
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	return map[string]float64{"p50": ms(percentile(ds, 50)), "p95": ms(percentile(ds, 95)), "p99": ms(percentile(ds, 99)), "max": ms(ds[len(ds)-1])}
}

func transportTotals(calls []CallResult) map[string]*TransportTotals {
	type acc struct {
		setup, first, login []time.Duration
		mosSum              float64
		mosN                int
	}
	out := map[string]*TransportTotals{}
	accs := map[string]*acc{}
	for _, c := range calls {
		k := c.Transport.String()
		t, a := out[k], accs[k]
		if t == nil {
			t, a = &TransportTotals{}, &acc{}
			out[k], accs[k] = t, a
		}
		t.Attempted++
		if c.Answered {
			t.Answered++
			a.setup = append(a.setup, c.Setup)
			if c.Failure == "" {
				t.Completed++
			}
		}
		if c.FirstAudio > 0 {
			a.first = append(a.first, c.FirstAudio)
		}
		if c.Login > 0 {
			a.login = append(a.login, c.Login)
		}
		if c.MOS > 0 {
			a.mosSum += c.MOS
			a.mosN++
		}
	}
	for k, t := range out {
		a := accs[k]
		t.SetupMs, t.FirstAudioMs, t.LoginMs = msPercentiles(a.setup), msPercentiles(a.first), msPercentiles(a.login)
		if a.mosN > 0 {
			t.MOS = math.Round(100*a.mosSum/float64(a.mosN)) / 100
		}
	}
	return out
}

// Second is one second of a run.
type Second struct {
	T          int     `json:"t"`       // seconds since start
	Started    int     `json:"started"` // calls started in this second
	Active     int     `json:"active"`  // calls up at the end of it
	SetupP95Ms float64 `json:"setup_p95_ms"`
	MOS        float64 `json:"mos"` // mean MOS of calls that ended in it, 0 if none
	CPU        float64 `json:"cpu_percent,omitempty"`
	RSSMB      float64 `json:"rss_mb,omitempty"`
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func newReport(sc *Scenario, start time.Time, calls []CallResult) *Report {
	sort.Slice(calls, func(i, j int) bool { return calls[i].ID < calls[j].ID })
	r := &Report{Target: sc.Target, Start: start, Elapsed: time.Since(start), Failed: map[string]int{},
		Checks: map[string][2]int{}, Calls: calls, MOSMin: 0}
	var setups, firsts []time.Duration
	var mosN int
	var lossSum, mosSum float64
	var jitSum time.Duration
	for _, c := range calls {
		r.Attempted++
		if c.Answered {
			r.Answered++
			setups = append(setups, c.Setup)
		}
		if c.FirstAudio > 0 {
			firsts = append(firsts, c.FirstAudio)
		}
		if c.Failure != "" {
			r.Failed[c.Failure]++
		} else if c.Answered {
			r.Completed++
		}
		for _, ch := range c.Checks {
			v := r.Checks[ch.Name]
			if ch.Heard {
				v[0]++
			} else {
				v[1]++
			}
			r.Checks[ch.Name] = v
		}
		if c.MOS > 0 {
			mosN++
			mosSum += c.MOS
			lossSum += c.LossPercent
			jitSum += c.Jitter
			if r.MOSMin == 0 || c.MOS < r.MOSMin {
				r.MOSMin = c.MOS
			}
		}
	}
	sort.Slice(setups, func(i, j int) bool { return setups[i] < setups[j] })
	r.SetupP50, r.SetupP95, r.SetupP99 = percentile(setups, 50), percentile(setups, 95), percentile(setups, 99)
	if len(setups) > 0 {
		r.SetupMax = setups[len(setups)-1]
	}
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
	r.SetupMs = map[string]float64{"p50": ms(r.SetupP50), "p95": ms(r.SetupP95), "p99": ms(r.SetupP99), "max": ms(r.SetupMax)}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	if len(firsts) > 0 {
		r.FirstAudioP50, r.FirstAudioP95, r.FirstAudioP99 = percentile(firsts, 50), percentile(firsts, 95), percentile(firsts, 99)
		r.FirstAudioMax = firsts[len(firsts)-1]
		r.FirstAudioMs = map[string]float64{"p50": ms(r.FirstAudioP50), "p95": ms(r.FirstAudioP95), "p99": ms(r.FirstAudioP99), "max": ms(r.FirstAudioMax)}
	}
	if sc.Browsers.Share > 0 {
		r.WS, r.BrowserTo = sc.Browsers.WS, sc.BrowserTo()
		r.Transports = transportTotals(calls)
	}
	if mosN > 0 {
		r.MOS, r.LossPercent, r.Jitter = mosSum/float64(mosN), lossSum/float64(mosN), jitSum/time.Duration(mosN)
	}
	r.Series = series(start, r.Elapsed, calls)
	return r
}

func series(start time.Time, elapsed time.Duration, calls []CallResult) []Second {
	n := int(elapsed/time.Second) + 1
	s := make([]Second, n)
	setups := make([][]time.Duration, n)
	mosSum := make([]float64, n)
	mosN := make([]int, n)
	for i := range s {
		s[i].T = i
	}
	at := func(t time.Time) int { return max(0, min(n-1, int(t.Sub(start)/time.Second))) }
	for _, c := range calls {
		i := at(c.Start)
		s[i].Started++
		if !c.Answered {
			continue
		}
		a := at(c.Start.Add(c.Setup))
		setups[a] = append(setups[a], c.Setup)
		endT := c.Start.Add(c.Setup + c.Duration)
		e := at(endT)
		for k := a; k < n && k < e; k++ {
			s[k].Active++
		}
		if c.MOS > 0 {
			mosSum[e] += c.MOS
			mosN[e]++
		}
	}
	for i := range s {
		sort.Slice(setups[i], func(a, b int) bool { return setups[i][a] < setups[i][b] })
		s[i].SetupP95Ms = float64(percentile(setups[i], 95)) / 1e6
		if mosN[i] > 0 {
			s[i].MOS = mosSum[i] / float64(mosN[i])
		}
	}
	return s
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) {
	switch {
	case r.WS != "" && r.Target != "":
		fmt.Fprintf(w, "target %s and browsers via %s calling %s, %s\n", r.Target, r.WS, r.BrowserTo, r.Elapsed.Round(time.Millisecond))
	case r.WS != "":
		fmt.Fprintf(w, "browsers via %s calling %s, %s\n", r.WS, r.BrowserTo, r.Elapsed.Round(time.Millisecond))
	default:
		fmt.Fprintf(w, "target %s, %s\n", r.Target, r.Elapsed.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "calls: %d attempted, %d answered, %d completed, %d failed\n", r.Attempted, r.Answered, r.Completed, r.Attempted-r.Completed)
	reasons := make([]string, 0, len(r.Failed))
	for k := range r.Failed {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool { return r.Failed[reasons[i]] > r.Failed[reasons[j]] })
	for _, k := range reasons {
		fmt.Fprintf(w, "  failed %5d  %s\n", r.Failed[k], k)
	}
	latency := func(label string, d ...time.Duration) {
		fmt.Fprintf(w, "%-14s p50 %s  p95 %s  p99 %s  max %s\n", label, d[0].Round(10*time.Microsecond),
			d[1].Round(10*time.Microsecond), d[2].Round(10*time.Microsecond), d[3].Round(10*time.Microsecond))
	}
	latency("setup latency:", r.SetupP50, r.SetupP95, r.SetupP99, r.SetupMax)
	if r.FirstAudioMax > 0 {
		latency("first audio:", r.FirstAudioP50, r.FirstAudioP95, r.FirstAudioP99, r.FirstAudioMax)
	}
	for _, k := range sortedKeys(r.Transports) {
		t := r.Transports[k]
		fmt.Fprintf(w, "  %-6s %d attempted, %d answered, %d completed; setup p95 %.1f ms, first audio p95 %.1f ms", k,
			t.Attempted, t.Answered, t.Completed, t.SetupMs["p95"], t.FirstAudioMs["p95"])
		if t.LoginMs != nil {
			fmt.Fprintf(w, ", ws login p95 %.1f ms", t.LoginMs["p95"])
		}
		if t.MOS > 0 {
			fmt.Fprintf(w, ", MOS %.2f", t.MOS)
		}
		fmt.Fprintln(w)
	}
	for _, k := range sortedKeys(r.Checks) {
		v := r.Checks[k]
		fmt.Fprintf(w, "heard %-20s %d of %d calls\n", k+":", v[0], v[0]+v[1])
	}
	if r.MOS > 0 {
		fmt.Fprintf(w, "RTP received: loss %.2f%%  jitter %s  MOS %.2f (min %.2f)\n", r.LossPercent, r.Jitter.Round(10*time.Microsecond), r.MOS, r.MOSMin)
	}
	if p := r.Server; p != nil {
		fmt.Fprintf(w, "server pid %d: CPU %.1f%% mean, %.1f%% peak; RSS %.1f MB peak\n", p.PID, p.CPUMean, p.CPUPeak, p.RSSPeakMB)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WriteJSON writes the whole report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteCSV writes one row per call; every expect step is a column
// ("heard: NAME" yes/no), so each caller says what it heard.
func (r *Report) WriteCSV(w io.Writer) error {
	var names []string
	seen := map[string]bool{}
	for _, c := range r.Calls {
		for _, ch := range c.Checks {
			if !seen[ch.Name] {
				seen[ch.Name] = true
				names = append(names, ch.Name)
			}
		}
	}
	cw := csv.NewWriter(w)
	head := []string{"id", "start_s", "answered", "setup_ms", "duration_s", "failure", "loss_percent", "jitter_ms", "mos",
		"transport", "login_ms", "first_audio_ms"}
	for _, n := range names {
		head = append(head, "heard: "+n)
	}
	_ = cw.Write(head)
	for _, c := range r.Calls {
		row := []string{strconv.Itoa(c.ID), fmt.Sprintf("%.3f", c.Start.Sub(r.Start).Seconds()), strconv.FormatBool(c.Answered),
			fmt.Sprintf("%.2f", float64(c.Setup)/1e6), fmt.Sprintf("%.2f", c.Duration.Seconds()), c.Failure,
			fmt.Sprintf("%.2f", c.LossPercent), fmt.Sprintf("%.2f", float64(c.Jitter)/1e6), fmt.Sprintf("%.2f", c.MOS),
			c.Transport.String(), fmt.Sprintf("%.2f", float64(c.Login)/1e6), fmt.Sprintf("%.2f", float64(c.FirstAudio)/1e6)}
		for _, n := range names {
			v := ""
			for _, ch := range c.Checks {
				if ch.Name == n {
					v = map[bool]string{true: "yes", false: "no"}[ch.Heard]
				}
			}
			row = append(row, v)
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// WriteSVG draws the run over time: calls started per second, concurrent
// calls, p95 set-up latency and MOS, one panel each (plus server CPU when
// sampled), as a standalone SVG file.
func (r *Report) WriteSVG(w io.Writer) error {
	type panel struct {
		title string
		unit  string
		val   func(Second) float64
		gaps  bool // 0 means "no data this second": the line breaks
	}
	panels := []panel{
		{"calls started", "/s", func(s Second) float64 { return float64(s.Started) }, false},
		{"concurrent calls", "", func(s Second) float64 { return float64(s.Active) }, false},
		{"setup latency p95 (calls answered)", "ms", func(s Second) float64 { return s.SetupP95Ms }, true},
		{"MOS (calls ending)", "", func(s Second) float64 { return s.MOS }, true},
	}
	if r.Server != nil {
		panels = append(panels, panel{"server CPU", "%", func(s Second) float64 { return s.CPU }, false})
	}
	const W, PH, L, R, T = 760, 120, 70, 20, 40
	H := T + len(panels)*(PH+40) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := r.Target
	if title == "" {
		title = r.WS + " → " + r.BrowserTo
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s — %d calls, %d answered, %d completed</text>`+"\n", L, xmlEscape(title), r.Attempted, r.Answered, r.Completed)
	n := len(r.Series)
	xs := func(i int) float64 {
		if n <= 1 {
			return L
		}
		return L + float64(i)*float64(W-L-R)/float64(n-1)
	}
	for pi, p := range panels {
		y0 := T + pi*(PH+40) + 20
		hi := 0.0
		for _, s := range r.Series {
			hi = math.Max(hi, p.val(s))
		}
		if hi == 0 {
			hi = 1
		}
		hi = niceCeil(hi)
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", L, y0-6, p.title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", L, y0, W-L-R, PH)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s%s</text>`+"\n", L-4, y0+10, trimFloat(hi), p.unit)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">0</text>`+"\n", L-4, y0+PH)
		open := false
		for i, s := range r.Series {
			v := p.val(s)
			if p.gaps && v == 0 {
				if open {
					b.WriteString(`"/>` + "\n")
					open = false
				}
				continue
			}
			if !open {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="`)
				open = true
			}
			y := float64(y0+PH) - v/hi*PH
			fmt.Fprintf(&b, "%.1f,%.1f ", xs(i), y)
			if p.gaps {
				fmt.Fprintf(&b, `"/><circle cx="%.1f" cy="%.1f" r="1.5" fill="#1f77b4"/><polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%.1f,%.1f `, xs(i), y, xs(i), y)
			}
		}
		if open {
			b.WriteString(`"/>` + "\n")
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%ds</text>`+"\n", W-R, y0+PH+14, max(0, n-1))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}
