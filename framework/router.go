package framework

import (
	"context"
	"sort"
	"strings"
	"sync"
)

// Handler runs a call flow. ServeCall returns when the flow is done; the
// call is then hung up if it is still up.
type Handler interface {
	ServeCall(ctx context.Context, c *Call) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Call) error

// ServeCall calls f(ctx, c).
func (f HandlerFunc) ServeCall(ctx context.Context, c *Call) error { return f(ctx, c) }

// Router maps the called user (the request-URI user of a SIP INVITE, e.g.
// "ivr" or "1000") to a handler, the way http.ServeMux maps paths. A pattern
// is matched exactly, or as a prefix when it ends in "*" (longest prefix
// wins). Calls that match nothing go to the default handler, or are
// rejected with 404 when there is none.
type Router struct {
	mu       sync.RWMutex
	exact    map[string]Handler
	prefixes []prefixRoute
	def      Handler
}

type prefixRoute struct {
	prefix string
	h      Handler
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{exact: map[string]Handler{}} }

// Handle registers h for pattern. Registering a pattern twice replaces it.
func (r *Router) Handle(pattern string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		for i := range r.prefixes {
			if r.prefixes[i].prefix == p {
				r.prefixes[i].h = h
				return
			}
		}
		r.prefixes = append(r.prefixes, prefixRoute{p, h})
		sort.Slice(r.prefixes, func(i, j int) bool { return len(r.prefixes[i].prefix) > len(r.prefixes[j].prefix) })
		return
	}
	r.exact[pattern] = h
}

// HandleFunc registers a function for pattern.
func (r *Router) HandleFunc(pattern string, f func(ctx context.Context, c *Call) error) {
	r.Handle(pattern, HandlerFunc(f))
}

// Default sets the handler for calls no pattern matches.
func (r *Router) Default(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.def = h
}

// Match returns the handler for user, or nil.
func (r *Router) Match(user string) Handler {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if h, ok := r.exact[user]; ok {
		return h
	}
	for _, p := range r.prefixes {
		if strings.HasPrefix(user, p.prefix) {
			return p.h
		}
	}
	return r.def
}

// ServeCall dispatches c to the matching handler; with none it rejects the
// call with 404.
func (r *Router) ServeCall(ctx context.Context, c *Call) error {
	h := r.Match(c.User())
	if h == nil {
		return c.Reject(ctx, 404)
	}
	return h.ServeCall(ctx, c)
}
