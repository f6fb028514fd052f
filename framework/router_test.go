package framework

import (
	"context"
	"testing"
)

func TestRouterMatch(t *testing.T) {
	named := func(name string) Handler {
		return HandlerFunc(func(context.Context, *Call) error { panic(name) })
	}
	r := NewRouter()
	r.Handle("ivr", named("ivr"))
	r.Handle("1*", named("1x"))
	r.Handle("100*", named("100x"))
	r.Handle("+4420*", named("london"))
	which := func(user string) string {
		h := r.Match(user)
		if h == nil {
			return ""
		}
		defer func() { recover() }()
		var name string
		func() {
			defer func() { name = recover().(string) }()
			_ = h.ServeCall(context.Background(), nil)
		}()
		return name
	}
	cases := map[string]string{"ivr": "ivr", "1234": "1x", "1001": "100x", "+442079460000": "london", "echo": "", "": ""}
	for user, want := range cases {
		if got := which(user); got != want {
			t.Errorf("%q -> %q, want %q", user, got, want)
		}
	}
	r.Default(named("default"))
	if got := which("echo"); got != "default" {
		t.Errorf("default route: got %q", got)
	}
	r.Handle("ivr", named("ivr2"))
	if got := which("ivr"); got != "ivr2" {
		t.Errorf("re-registering replaces: got %q", got)
	}
}
