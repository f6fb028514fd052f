package audio

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/dsp"
)

// ErrTTSUnavailable is wrapped by the error TTS.Speech returns when the
// espeak-ng binary cannot be found; that error also wraps exec.ErrNotFound.
var ErrTTSUnavailable = errors.New("audio: text-to-speech unavailable: espeak-ng not found (apt-get install espeak-ng)")

// ErrSpeechTooLong is wrapped by the error TTS.Speech returns when the text
// or the synthesised audio exceeds the TTS's limits.
var ErrSpeechTooLong = errors.New("audio: speech too long")

// TTS turns text into speech with espeak-ng and keeps the results in a
// bounded LRU cache, so a prompt spoken on every call is synthesised once.
//
// Each synthesis runs `espeak-ng --stdout -b 1 -v VOICE --stdin` as a
// child process (no shell; the text goes in on stdin, so it can never be
// taken for an option), bounded by Timeout and by MaxAudio, with at most
// MaxConcurrent processes at a time. Its 22050 Hz output is resampled once
// to the requested rate and cached under (text, voice, rate). Concurrent
// requests for the same key share one synthesis. Memory is bounded by
// CacheBytes (samples are 2 bytes each) plus the audio being synthesised.
//
// The fields must be set before first use. The zero value is ready: it
// runs "espeak-ng" from PATH with the defaults below. A TTS is safe for
// concurrent use.
type TTS struct {
	// Command is the espeak-ng executable, a name looked up in PATH or a
	// path (default "espeak-ng"). Tests point it at a wrapper.
	Command string
	// Timeout bounds one synthesis (default 10 s).
	Timeout time.Duration
	// MaxText bounds the text in bytes (default 4096).
	MaxText int
	// MaxAudio bounds what one synthesis may produce (default 2 minutes).
	MaxAudio time.Duration
	// CacheBytes bounds the cache (default 32 MiB: about 35 minutes of
	// 8 kHz speech). Entries larger than the bound are not cached; a
	// negative value disables the cache (concurrent requests still share).
	CacheBytes int64
	// MaxConcurrent bounds the espeak-ng processes running at once
	// (default 2).
	MaxConcurrent int

	once    sync.Once
	sem     chan struct{}
	mu      sync.Mutex
	lru     *list.List // of *ttsEntry, most recently used first
	entries map[ttsKey]*list.Element
	flights map[ttsKey]*ttsFlight
	used    int64
	runs    atomic.Int64
	hits    atomic.Int64
	path    string // the executable, once found
}

type ttsKey struct {
	text, voice string
	rate        int
}

type ttsEntry struct {
	key     ttsKey
	samples []int16
}

// ttsFlight is one synthesis under way; waiters block on done.
type ttsFlight struct {
	done    chan struct{}
	samples []int16
	err     error
	waiters int
	cancel  context.CancelFunc
}

// DefaultVoice is the espeak-ng voice used when none is given.
const DefaultVoice = "en-us"

func (t *TTS) init() {
	t.once.Do(func() {
		if t.Command == "" {
			t.Command = "espeak-ng"
		}
		if t.Timeout <= 0 {
			t.Timeout = 10 * time.Second
		}
		if t.MaxText <= 0 {
			t.MaxText = 4096
		}
		if t.MaxAudio <= 0 {
			t.MaxAudio = 2 * time.Minute
		}
		if t.CacheBytes == 0 {
			t.CacheBytes = 32 << 20
		}
		if t.MaxConcurrent <= 0 {
			t.MaxConcurrent = 2
		}
		t.sem = make(chan struct{}, t.MaxConcurrent)
		t.lru = list.New()
		t.entries = map[ttsKey]*list.Element{}
		t.flights = map[ttsKey]*ttsFlight{}
	})
}

// TTSStats counts a TTS's work.
type TTSStats struct {
	Runs      int64 // espeak-ng processes started
	Hits      int64 // requests served from the cache
	Entries   int   // cached utterances
	CacheUsed int64 // bytes of cached samples
}

// Stats returns the TTS's counters.
func (t *TTS) Stats() TTSStats {
	t.init()
	t.mu.Lock()
	defer t.mu.Unlock()
	return TTSStats{Runs: t.runs.Load(), Hits: t.hits.Load(), Entries: t.lru.Len(), CacheUsed: t.used}
}

// Speech returns a player of text spoken by voice (an espeak-ng voice name
// such as "en-us", "en-gb+f3" or "de"; "" means DefaultVoice) at rate Hz.
// The returned source shares the cached samples and has its own position;
// it plays at rate without further work, and at other rates through
// WAVSource's resampler.
//
// It returns an error wrapping ErrTTSUnavailable (and exec.ErrNotFound)
// when espeak-ng is missing, ErrSpeechTooLong beyond the limits, ctx's
// error when ctx ends first, or the synthesis's error. Waiting for a
// synthesis that another request started is bounded by ctx too; the
// synthesis itself is cancelled when nobody waits for it any more.
func (t *TTS) Speech(ctx context.Context, text, voice string, rate int) (*WAVSource, error) {
	t.init()
	if voice == "" {
		voice = DefaultVoice
	}
	if err := checkVoice(voice); err != nil {
		return nil, err
	}
	if rate <= 0 || rate > media.MaxFrameSamples*50 {
		return nil, fmt.Errorf("audio: tts: invalid rate %d Hz", rate)
	}
	if len(text) > t.MaxText {
		return nil, fmt.Errorf("%w: %d bytes of text, limit %d", ErrSpeechTooLong, len(text), t.MaxText)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("audio: tts: %w", err)
	}
	key := ttsKey{text: text, voice: voice, rate: rate}

	t.mu.Lock()
	if el, ok := t.entries[key]; ok {
		t.lru.MoveToFront(el)
		s := el.Value.(*ttsEntry).samples
		t.mu.Unlock()
		t.hits.Add(1)
		return &WAVSource{samples: s, rate: rate}, nil
	}
	fl, ok := t.flights[key]
	if !ok {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.Timeout)
		fl = &ttsFlight{done: make(chan struct{}), cancel: cancel}
		t.flights[key] = fl
		go t.run(fctx, key, fl)
	}
	fl.waiters++
	t.mu.Unlock()

	select {
	case <-fl.done:
		if fl.err != nil {
			return nil, fl.err
		}
		return &WAVSource{samples: fl.samples, rate: rate}, nil
	case <-ctx.Done():
		t.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			// Nobody wants it any more: stop it, and let a later request
			// start afresh rather than join a cancelled synthesis.
			fl.cancel()
			if t.flights[key] == fl {
				delete(t.flights, key)
			}
		}
		t.mu.Unlock()
		return nil, fmt.Errorf("audio: tts: %w", ctx.Err())
	}
}

// run synthesises one flight and caches its result.
func (t *TTS) run(ctx context.Context, key ttsKey, fl *ttsFlight) {
	defer fl.cancel()
	samples, err := t.synthesise(ctx, key)
	t.mu.Lock()
	if t.flights[key] == fl {
		delete(t.flights, key)
	}
	fl.samples, fl.err = samples, err
	if err == nil {
		t.store(key, samples)
	}
	t.mu.Unlock()
	close(fl.done)
}

// store adds an entry and evicts the least recently used beyond the bound.
// Called with t.mu held.
func (t *TTS) store(key ttsKey, samples []int16) {
	size := int64(len(samples))*2 + int64(len(key.text)) + 64
	if t.CacheBytes < 0 || size > t.CacheBytes {
		return
	}
	t.entries[key] = t.lru.PushFront(&ttsEntry{key: key, samples: samples})
	t.used += size
	for t.used > t.CacheBytes {
		el := t.lru.Back()
		e := el.Value.(*ttsEntry)
		t.lru.Remove(el)
		delete(t.entries, e.key)
		t.used -= int64(len(e.samples))*2 + int64(len(e.key.text)) + 64
	}
}

// lookPath finds the executable. A found path is kept; a failure is not,
// so installing espeak-ng on a running server takes effect.
func (t *TTS) lookPath() (string, error) {
	t.mu.Lock()
	path := t.path
	t.mu.Unlock()
	if path != "" {
		return path, nil
	}
	path, err := exec.LookPath(t.Command)
	switch {
	case err == nil:
		t.mu.Lock()
		t.path = path
		t.mu.Unlock()
		return path, nil
	case errors.Is(err, exec.ErrNotFound):
		return "", fmt.Errorf("%w: %w", ErrTTSUnavailable, err)
	case errors.Is(err, fs.ErrNotExist): // a path that is not there
		return "", fmt.Errorf("%w: %s: %w (%w)", ErrTTSUnavailable, t.Command, exec.ErrNotFound, err)
	}
	return "", fmt.Errorf("audio: tts: %w", err)
}

func (t *TTS) synthesise(ctx context.Context, key ttsKey) ([]int16, error) {
	path, err := t.lookPath()
	if err != nil {
		return nil, err
	}
	select {
	case t.sem <- struct{}{}:
		defer func() { <-t.sem }()
	case <-ctx.Done():
		return nil, fmt.Errorf("audio: tts: waiting for a free synthesiser: %w", ctx.Err())
	}
	cmd := exec.CommandContext(ctx, path, "--stdout", "-b", "1", "-v", key.voice, "--stdin")
	cmd.Stdin = strings.NewReader(key.text)
	cmd.WaitDelay = time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, n: 1024}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("audio: tts: %w", err)
	}
	t.runs.Add(1)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			err = fmt.Errorf("%w: %w", ErrTTSUnavailable, err)
		}
		return nil, fmt.Errorf("audio: tts: %w", err)
	}
	// 22050 Hz is espeak-ng's own rate; allow for MBROLA voices up to
	// 48 kHz in the byte limit.
	limit := int64(t.MaxAudio.Seconds()*48000*2) + 4096
	raw, rerr := io.ReadAll(io.LimitReader(stdout, limit+1))
	if int64(len(raw)) > limit {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%w: espeak-ng produced more than %s of audio", ErrSpeechTooLong, t.MaxAudio)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("audio: tts: espeak-ng: %w", ctx.Err())
	}
	if rerr != nil || werr != nil {
		return nil, fmt.Errorf("audio: tts: espeak-ng -v %s: %w: %s", key.voice, errors.Join(rerr, werr), strings.TrimSpace(stderr.String()))
	}
	pcm, srcRate, err := parseStreamedWAV(raw)
	if err != nil {
		return nil, fmt.Errorf("audio: tts: espeak-ng output: %w", err)
	}
	if time.Duration(len(pcm))*time.Second/time.Duration(srcRate) > t.MaxAudio {
		return nil, fmt.Errorf("%w: more than %s of audio", ErrSpeechTooLong, t.MaxAudio)
	}
	out, err := dsp.ResampleRational(make([]int16, 0, len(pcm)*key.rate/srcRate+1), pcm, srcRate, key.rate)
	if err != nil {
		return nil, fmt.Errorf("audio: tts: %w", err)
	}
	return out, nil
}

// checkVoice accepts espeak-ng voice names (letters, digits, "-", "_" and
// "+" for variants), never anything that could read as an option or a path.
func checkVoice(v string) error {
	if len(v) > 64 || v[0] == '-' {
		return fmt.Errorf("audio: tts: invalid voice %q", v)
	}
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '+':
		default:
			return fmt.Errorf("audio: tts: invalid voice %q", v)
		}
	}
	return nil
}

// parseStreamedWAV decodes 16-bit mono PCM WAV as a streaming writer
// leaves it (espeak-ng --stdout): the data chunk's size is a placeholder,
// so the audio runs to the end of the input.
func parseStreamedWAV(b []byte) ([]int16, int, error) {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("%w: no RIFF/WAVE header", ErrInvalidWAV)
	}
	rate := 0
	for p := 12; p+8 <= len(b); {
		id, size := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:]))
		body := b[p+8:]
		switch id {
		case "fmt ":
			if size < 16 || len(body) < 16 {
				return nil, 0, fmt.Errorf("%w: short fmt chunk", ErrInvalidWAV)
			}
			tag, ch, bits := binary.LittleEndian.Uint16(body), binary.LittleEndian.Uint16(body[2:]), binary.LittleEndian.Uint16(body[14:])
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			if tag != wavFormatPCM || ch != 1 || bits != 16 || rate <= 0 || rate > 192000 {
				return nil, 0, fmt.Errorf("%w: want 16-bit mono PCM (tag %d, %d channels, %d bits, %d Hz)", ErrUnsupportedWAV, tag, ch, bits, rate)
			}
		case "data":
			if rate == 0 {
				return nil, 0, fmt.Errorf("%w: data before fmt", ErrInvalidWAV)
			}
			if size > len(body) {
				size = len(body)
			}
			out := make([]int16, size/2)
			for i := range out {
				out[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return out, rate, nil
		}
		if size > len(body) {
			break
		}
		p += 8 + size + size&1
	}
	return nil, 0, fmt.Errorf("%w: no data chunk", ErrInvalidWAV)
}

// limitedBuffer keeps the first n bytes written to it and discards the
// rest (a child's stderr must not grow without bound).
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
