package framework

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

// ringbackCadence is one country's ringing tone (ITU-T E.180 Supplement
// 2): frequencies, and on/off times repeated.
type ringbackCadence struct {
	freqs   []float64
	pattern []time.Duration // on, off, on, off, ...
}

const ms = time.Millisecond

// ringbacks are the ringing tones by country code (ISO 3166 alpha-2,
// lower case; "uk" is an alias of "gb").
var ringbacks = map[string]ringbackCadence{
	"us": {[]float64{440, 480}, []time.Duration{2000 * ms, 4000 * ms}},
	"ca": {[]float64{440, 480}, []time.Duration{2000 * ms, 4000 * ms}},
	"gb": {[]float64{400, 450}, []time.Duration{400 * ms, 200 * ms, 400 * ms, 2000 * ms}},
	"ie": {[]float64{400, 450}, []time.Duration{400 * ms, 200 * ms, 400 * ms, 2000 * ms}},
	"de": {[]float64{425}, []time.Duration{1000 * ms, 4000 * ms}},
	"at": {[]float64{420}, []time.Duration{1000 * ms, 5000 * ms}},
	"ch": {[]float64{425}, []time.Duration{1000 * ms, 4000 * ms}},
	"nl": {[]float64{425}, []time.Duration{1000 * ms, 4000 * ms}},
	"it": {[]float64{425}, []time.Duration{1000 * ms, 4000 * ms}},
	"es": {[]float64{425}, []time.Duration{1500 * ms, 3000 * ms}},
	"fr": {[]float64{440}, []time.Duration{1500 * ms, 3500 * ms}},
	// Japan's 400 Hz is amplitude-modulated at 16 Hz; we play it plain.
	"jp": {[]float64{400}, []time.Duration{1000 * ms, 2000 * ms}},
}

// RingbackCountries lists the country codes Ringback knows, sorted.
func RingbackCountries() []string {
	out := make([]string, 0, len(ringbacks)+1)
	for k := range ringbacks {
		out = append(out, k)
	}
	out = append(out, "uk")
	sort.Strings(out)
	return out
}

// Ringback returns the ringing tone callers in country hear while a call
// is put through — the country's frequencies and cadence, repeated
// forever. country is an ISO 3166 code ("us", "gb" or "uk", "de", "fr",
// "jp", ...; see RingbackCountries), case-insensitive; "" means "us".
// The source is cheap (a table sine, no allocation per frame).
func Ringback(country string) (media.Source, error) {
	c := strings.ToLower(strings.TrimSpace(country))
	switch c {
	case "":
		c = "us"
	case "uk":
		c = "gb"
	}
	rb, ok := ringbacks[c]
	if !ok {
		return nil, fmt.Errorf("unknown ringback country %q (known: %s)", country, strings.Join(RingbackCountries(), ", "))
	}
	if len(rb.pattern) == 2 {
		return audio.NewTone(audio.Tone{Freqs: rb.freqs, On: rb.pattern[0], Off: rb.pattern[1]}), nil
	}
	var parts []media.Source
	for i, d := range rb.pattern {
		if i%2 == 0 {
			parts = append(parts, audio.NewTone(audio.Tone{Freqs: rb.freqs, Duration: d}))
		} else {
			parts = append(parts, media.Silence(d))
		}
	}
	return media.Loop(media.Sequence(parts...).(interface {
		media.Source
		Rewind()
	}), 0), nil
}
