package sip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// SignalContentType is the Content-Type of an INFO that carries an
// application signal: a JSON object {"name": "...", "payload": ...}.
const SignalContentType = "application/json"

// Limits of a signal: its name and its JSON payload.
const (
	MaxSignalName    = 64
	MaxSignalPayload = 8 * 1024
)

// ErrBadSignal reports a malformed signal body.
var ErrBadSignal = errors.New("sip: malformed signal")

// ParseSignal reads an INFO signal body: a JSON object with a "name"
// string (1-64 bytes) and an optional "payload" of any JSON value (at
// most 8 KiB). The payload is returned compacted.
func ParseSignal(body []byte) (name string, payload json.RawMessage, err error) {
	if len(body) > MaxSignalPayload+MaxSignalName+64 {
		return "", nil, fmt.Errorf("%w: body of %d bytes", ErrBadSignal, len(body))
	}
	var msg struct {
		Name    *string         `json:"name"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	if msg.Name == nil || *msg.Name == "" || len(*msg.Name) > MaxSignalName || !utf8.ValidString(*msg.Name) {
		return "", nil, fmt.Errorf("%w: name must be 1-%d bytes", ErrBadSignal, MaxSignalName)
	}
	if len(msg.Payload) > MaxSignalPayload {
		return "", nil, fmt.Errorf("%w: payload of %d bytes exceeds %d", ErrBadSignal, len(msg.Payload), MaxSignalPayload)
	}
	if len(msg.Payload) > 0 && !bytes.Equal(msg.Payload, []byte("null")) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, msg.Payload); err != nil {
			return "", nil, fmt.Errorf("%w: %w", ErrBadSignal, err)
		}
		payload = buf.Bytes()
	}
	return *msg.Name, payload, nil
}

// OnSignal sets the callback for signals the far end sends in the call
// (INFO with Content-Type application/json, see ParseSignal). It runs on
// the INFO's transaction goroutine after the 200 is sent.
func (l *Leg) OnSignal(fn func(name string, payload []byte)) {
	l.mu.Lock()
	l.onSignal = fn
	l.mu.Unlock()
}

// SendSignal sends a signal to the far end as an INFO inside the dialog
// and waits for the final response.
func (l *Leg) SendSignal(ctx context.Context, name string, payload json.RawMessage) error {
	if l.State() != LegAnswered {
		return errors.New("sip: signal on a leg that is not answered")
	}
	body, err := json.Marshal(struct {
		Name    string          `json:"name"`
		Payload json.RawMessage `json:"payload,omitempty"`
	}{name, payload})
	if err != nil {
		return fmt.Errorf("sip: signal %s: %w", name, err)
	}
	req := sip.NewRequest(sip.INFO, l.remoteTarget())
	req.AppendHeader(sip.NewHeader("Content-Type", SignalContentType))
	req.SetBody(body)
	if _, err := l.inDialog(ctx, req); err != nil {
		return fmt.Errorf("sip: INFO signal %s: %w", name, err)
	}
	return nil
}

// onSignalInfo answers an INFO signal and hands it to the leg's callback.
func (a *Agent) onSignalInfo(l *Leg, req *sip.Request, tx sip.ServerTransaction) {
	name, payload, err := ParseSignal(req.Body())
	if err != nil {
		if ok, held := a.malformedLog.allow(time.Now()); ok {
			l.log.Warn("sip: malformed signal INFO", "error", err, "suppressed", held)
		}
		a.respond(req, tx, 400, "Bad Request (signal body)")
		return
	}
	l.mu.Lock()
	fn := l.onSignal
	l.mu.Unlock()
	if fn == nil {
		a.respond(req, tx, 415, "Unsupported Media Type")
		return
	}
	a.respond(req, tx, 200, "OK")
	fn(name, payload)
}
