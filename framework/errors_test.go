package framework

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestWrapVerbWrapsOnce(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"sentinel", wrapVerb("record", ErrHangup), "framework: record: call hung up"},
		{"verb on verb", wrapVerb("record", wrapVerb("play", ErrHangup)), "framework: play: call hung up"},
		{"wrapped below a verb", wrapVerb("record", fmt.Errorf("beep: %w", wrapVerb("play", ErrHangup))), "beep: framework: play: call hung up"},
		{"ctx", wrapVerb("collect digits", context.Canceled), "framework: collect digits: context canceled"},
		{"nil", wrapVerb("x", nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if tt.err != nil {
				got = tt.err.Error()
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	if !errors.Is(wrapVerb("record", ErrHangup), ErrHangup) {
		t.Fatal("wrapped ErrHangup no longer matches")
	}
}
