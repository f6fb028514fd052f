// Command presence prints the roster of a small PBX each time someone's
// presence changes: register phones as alice or bob (password "secret",
// or the accounts of -users FILE), call one from the other by name, and
// watch them go available, ringing, on-call and back. SIP phones can
// watch too: SUBSCRIBE to sip:alice@HOST:PORT for the presence or the
// dialog event package (busy-lamp fields), with a user's credentials.
//
//	go run ./examples/presence -sip-addr 127.0.0.1:5080
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

func main() {
	addr := flag.String("sip-addr", "127.0.0.1:5080", "SIP address (UDP and TCP)")
	usersFile := flag.String("users", "", "TOML file of [[users]] (default alice and bob, password secret)")
	flag.Parse()
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "secret"}, sip.Account{Name: "bob", Password: "secret"})
	if *usersFile != "" {
		var err error
		if users, err = sip.LoadDirectory(*usersFile); err != nil {
			panic(err)
		}
	}
	r := framework.NewRouter()
	r.Default(framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, c.User(), framework.DialOptions{CallerID: framework.CallerID{Number: c.AuthUser()}}) // call a user by name
	}))
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := framework.NewServer(framework.Config{SIPAddr: *addr, HTTPAddr: "-", Users: users, Logger: quiet}, r)
	if err != nil {
		panic(err)
	}
	go func() {
		<-srv.Ready()
		fmt.Printf("SIP on %s; register as one of %v\n", *addr, users.Names())
		for { // a subscription that overflows ends; print the roster and subscribe again
			sub := srv.Presence().Subscribe(context.Background(), framework.PresenceSubscribeOptions{})
			for range sub.C {
				fmt.Printf("\n%s\n", time.Now().Format(time.TimeOnly))
				for _, p := range srv.Presence().Roster() {
					fmt.Printf("  %-12s %-10s %s\n", p.User, p.Status, p.Note)
				}
			}
		}
	}()
	panic(srv.ListenAndServe(context.Background()))
}
