// Command dropin shows legs dropping in and out of rooms while they talk:
// call sip:red@127.0.0.1:5080 or sip:blue@127.0.0.1:5080 to join that
// room; press any digit to move to the other room, and again to come back.
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

func main() {
	addr := flag.String("sip-addr", "127.0.0.1:5080", "SIP address to listen on")
	flag.Parse()
	other := map[string]string{"red": "blue", "blue": "red"}
	flow := func(ctx context.Context, c *framework.Call) error {
		room := c.User()
		for {
			// Stay in the room until a digit (or the caller hangs up).
			inRoom, leave := context.WithCancel(ctx)
			go func() {
				if _, err := c.CollectDigits(inRoom, framework.CollectOptions{FirstDigitTimeout: time.Hour}); err == nil {
					leave()
				}
			}()
			err := c.Join(inRoom, room, framework.JoinOptions{})
			leave()
			if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
				return err // hung up, kicked, or the room ended
			}
			room = other[room]
			c.Logger().Info("moving to the other room", "room", room)
		}
	}
	r := framework.NewRouter()
	r.HandleFunc("red", flow)
	r.HandleFunc("blue", flow)
	srv, err := framework.NewServer(framework.Config{SIPAddr: *addr, HTTPAddr: "-"}, r)
	if err != nil {
		panic(err)
	}
	panic(srv.ListenAndServe(context.Background()))
}
