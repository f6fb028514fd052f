package main

import (
	"context"

	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
)

func main() {
	prompts, r := apps.DemoPrompts(), framework.NewRouter()
	r.HandleFunc("hello", func(ctx context.Context, c *framework.Call) error {
		ask, _ := prompts.Get("digits") // "Type some digits, then press the pound key."
		digits, err := c.CollectDigits(ctx, framework.CollectOptions{Max: 10, Terminators: "#", Prompt: ask})
		if err != nil {
			return err // errors.Is(err, framework.ErrHangup) once the caller hangs up
		}
		c.Logger().Info("caller typed", "digits", digits)
		bye, _ := prompts.Get("goodbye")
		return c.Play(ctx, bye) // returning ends the call: Switchboard sends BYE
	})
	srv, _ := framework.NewServer(framework.Config{SIPAddr: ":5070", HTTPAddr: "-"}, r)
	panic(srv.ListenAndServe(context.Background()))
}
