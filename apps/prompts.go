// Package apps holds ready-made call flows built on the framework: the echo
// test, a continuous tone, and the demo IVR menu.
package apps

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
)

//go:embed prompts/*.wav
var promptFS embed.FS

// Prompts is a set of decoded prompt recordings, loaded once and shared by
// every call: Get hands out an independent player over the same samples.
type Prompts struct {
	mu    sync.Mutex
	fsys  fs.FS
	cache map[string]*audio.WAVSource
}

// DemoPrompts returns the prompts that ship with the demo (English, made
// with espeak-ng; see prompts/generate.sh).
func DemoPrompts() *Prompts { return NewPrompts(promptFS) }

// NewPrompts serves prompts from fsys: name "welcome" is "prompts/welcome.wav".
func NewPrompts(fsys fs.FS) *Prompts {
	return &Prompts{fsys: fsys, cache: map[string]*audio.WAVSource{}}
}

// Get returns a fresh player for the named prompt.
func (p *Prompts) Get(name string) (*audio.WAVSource, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.cache[name]; ok {
		return w.Clone(), nil
	}
	data, err := fs.ReadFile(p.fsys, "prompts/"+name+".wav")
	if err != nil {
		return nil, fmt.Errorf("apps: prompt %q: %w", name, err)
	}
	w, err := audio.NewWAVSource(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("apps: prompt %q: %w", name, err)
	}
	p.cache[name] = w
	return w.Clone(), nil
}

// Sources returns players for several prompts, for Play(ctx, srcs...).
func (p *Prompts) Sources(names ...string) ([]media.Source, error) {
	out := make([]media.Source, 0, len(names))
	for _, n := range names {
		s, err := p.Get(n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// DigitName returns the prompt name that speaks a DTMF digit.
func DigitName(d rune) string {
	switch d {
	case '*':
		return "digit-star"
	case '#':
		return "digit-pound"
	}
	return "digit-" + strings.ToUpper(string(d))
}
