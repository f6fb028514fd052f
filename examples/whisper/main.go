// Command whisper is supervisor coaching. Calls to sip:support@HOST are
// put through to the agent (-agent, a SIP URI). While such a call is up,
// a supervisor calls sip:coach@HOST to whisper to the agent (the customer
// does not hear), sip:monitor@HOST to listen in silently, or
// sip:barge@HOST to talk to both.
package main

import (
	"context"
	"errors"
	"flag"
	"sync"

	"github.com/switchboard-voice/switchboard/framework"
)

func main() {
	addr := flag.String("sip-addr", "127.0.0.1:5080", "SIP address to listen on")
	agent := flag.String("agent", "sip:agent@127.0.0.1:5090", "the agent's SIP URI")
	flag.Parse()
	var mu sync.Mutex
	var current *framework.Call // the support call to supervise
	r := framework.NewRouter()
	r.HandleFunc("support", func(ctx context.Context, c *framework.Call) error {
		mu.Lock()
		current = c
		mu.Unlock()
		return c.Dial(ctx, *agent, framework.DialOptions{})
	})
	modes := map[string]framework.Mode{"coach": framework.ModeWhisper, "monitor": framework.ModeMonitor, "barge": framework.ModeBarge}
	supervise := func(ctx context.Context, c *framework.Call) error {
		mu.Lock()
		target := current
		mu.Unlock()
		if target == nil {
			return errors.New("no support call to supervise")
		}
		legs, err := target.Legs(ctx) // the customer, then the agent
		if err != nil || len(legs) < 2 {
			return errors.New("the support call has no agent yet")
		}
		if err := c.Answer(ctx); err != nil {
			return err
		}
		// The supervisor's leg leaves this call for the support call.
		return c.Server().Move(ctx, c.ID(), framework.ToCall(target.ID()),
			framework.JoinOptions{Mode: modes[c.User()], Coach: legs[1].ID()})
	}
	for name := range modes {
		r.HandleFunc(name, supervise)
	}
	srv, err := framework.NewServer(framework.Config{SIPAddr: *addr, HTTPAddr: "-"}, r)
	if err != nil {
		panic(err)
	}
	panic(srv.ListenAndServe(context.Background()))
}
