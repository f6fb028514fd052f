package apps

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

// Extensions connects calls to the users of dir the way a PBX does: a call
// to "alice" rings every phone alice has registered and bridges the first
// to answer. When the user cannot be reached, the caller gets the status
// that says why (486 busy, 480 unavailable or not registered, 404 no such
// user... for an unanswered call). Calls to names that are not users go
// to fallback.
func Extensions(dir *sip.Directory, fallback framework.Handler) framework.HandlerFunc {
	return func(ctx context.Context, c *framework.Call) error {
		if _, ok := dir.Lookup(c.User()); !ok {
			return fallback.ServeCall(ctx, c)
		}
		err := c.Dial(ctx, c.User(), framework.DialOptions{Timeout: 30 * time.Second})
		switch {
		case err == nil, errors.Is(err, framework.ErrHangup):
			return err
		case errors.Is(err, framework.ErrBusy):
			return rejectOr(ctx, c, 486, err)
		case errors.Is(err, sip.ErrNotRegistered), errors.Is(err, framework.ErrNoAnswer):
			return rejectOr(ctx, c, 480, err)
		case errors.Is(err, framework.ErrDeclined):
			return rejectOr(ctx, c, 603, err)
		}
		return rejectOr(ctx, c, 503, err)
	}
}

// rejectOr rejects an unanswered call with code; an answered one just ends.
func rejectOr(ctx context.Context, c *framework.Call, code int, cause error) error {
	c.Logger().Info("extension unreachable", "user", c.User(), "cause", cause)
	if err := c.Reject(ctx, code); err != nil && !errors.Is(err, framework.ErrNotAnswered) {
		return err
	}
	return nil
}
