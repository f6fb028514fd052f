// Command speech is a call flow built on text-to-speech and voice
// activity: call sip:speech@127.0.0.1:5070 and it asks (espeak-ng) why you
// call, lets you talk over the question, tells you how long you spoke,
// and records the whole call in stereo (you left, it right) to
// call-<time>.wav. It needs espeak-ng (apt-get install espeak-ng).
package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
)

func main() {
	r := framework.NewRouter()
	r.HandleFunc("speech", func(ctx context.Context, c *framework.Call) error {
		path := fmt.Sprintf("call-%d.wav", time.Now().UnixNano())
		go c.Record(ctx, path, framework.RecordOptions{Stereo: true, StopDigits: "-", MaxDuration: 5 * time.Minute})

		ask, err := c.Speech(ctx, "Hello. Please tell me why you are calling.", framework.SayOptions{})
		if err != nil {
			return err // errors.Is(err, audio.ErrTTSUnavailable) without espeak-ng
		}
		said, err := c.DetectSpeech(ctx, framework.DetectSpeechOptions{Prompt: ask, Timeout: 8 * time.Second})
		if errors.Is(err, framework.ErrNoInput) {
			return c.Say(ctx, "I did not hear anything. Goodbye.", framework.SayOptions{})
		}
		if err != nil {
			return err
		}
		c.Logger().Info("caller spoke", "duration", said.Duration, "recording", path)
		msg := fmt.Sprintf("You spoke for %.0f seconds. Goodbye.", said.Duration.Seconds())
		return c.Say(ctx, msg, framework.SayOptions{Voice: "en-gb"})
	})
	srv, _ := framework.NewServer(framework.Config{SIPAddr: ":5070", HTTPAddr: "-"}, r)
	panic(srv.ListenAndServe(context.Background()))
}
