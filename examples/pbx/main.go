package main

import (
	"context"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

func main() {
	users := sip.NewDirectory( // phones register as these, with digest auth
		sip.Account{Name: "alice", Password: "alice-secret", DisplayName: "Alice Smith"},
		sip.Account{Name: "bob", Password: "bob-secret"},
	)
	r := framework.NewRouter()
	r.HandleFunc("reception", func(ctx context.Context, c *framework.Call) error {
		// Present the front desk, not the caller, to whoever picks up.
		desk := framework.CallerID{Name: "Reception", Number: "100"}
		return c.Dial(ctx, "alice", framework.DialOptions{CallerID: desk})
	})
	r.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if _, ok := users.Lookup(c.User()); !ok {
			return c.Reject(ctx, 404)
		}
		who := c.Caller() // parsed From: Name "Alice Smith", Number "alice", URI
		c.Logger().Info("call", "from", who.Name, "number", who.Number, "to", c.User())
		// The called phone shows the caller's name and number (passed on
		// by default); British ringback while it rings.
		return c.Dial(ctx, c.User(), framework.DialOptions{Timeout: 20 * time.Second, Ringback: "gb"})
	}))
	cfg := framework.Config{SIPAddr: ":5070", HTTPAddr: "-", Users: users}
	srv, _ := framework.NewServer(cfg, r)
	panic(srv.ListenAndServe(context.Background()))
}
