package framework

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard-voice/switchboard/media"
)

// SayOptions configure Say and Speech. The zero value speaks American
// English.
type SayOptions struct {
	// Voice is an espeak-ng voice: "en-us" (default), "en-gb", "de", "fr",
	// a variant such as "en-us+f3", ...
	Voice string
}

// Say speaks text to the caller with the server's text-to-speech
// (espeak-ng, see audio.TTS) and returns when it has been played, like
// Play: an unanswered call is answered first and cancelling ctx stops it.
// Speech is synthesised at the caller's codec rate and cached, so a
// sentence said on every call costs one synthesis. Without espeak-ng it
// returns an error wrapping audio.ErrTTSUnavailable.
func (c *Call) Say(ctx context.Context, text string, opts SayOptions) error {
	src, err := c.Speech(ctx, text, opts)
	if err != nil {
		return err
	}
	return c.Play(ctx, src)
}

// Speech returns text spoken as a Source at the caller's codec rate, for
// Play sequences or as a CollectOptions.Prompt (which the first digit
// interrupts). See Say.
func (c *Call) Speech(ctx context.Context, text string, opts SayOptions) (media.Source, error) {
	ep, err := c.callerEndpoint(ctx, "say")
	if err != nil {
		return nil, err
	}
	rate := ep.Config().Codec.SampleRate
	if rate == 0 {
		rate = 8000 // not negotiated yet (late offer)
	}
	src, err := c.tts.Speech(ctx, text, opts.Voice, rate)
	if err != nil {
		if c.ended() != nil {
			err = ErrHangup // the flow's ctx ended with the call
		}
		return nil, wrapVerb("say", err)
	}
	return src, nil
}

// callerEndpoint returns the first leg's media endpoint: the call actor
// names the caller's leg and its endpoint is looked up in this node's leg
// registry. Its methods are safe to call from the flow's goroutine.
func (c *Call) callerEndpoint(ctx context.Context, verb string) (*media.Endpoint, error) {
	r, err := c.ask(ctx, &callerReq{})
	if err != nil {
		return nil, wrapVerb(verb, err)
	}
	sig := c.srv.legReg.sig(r.LegID)
	if sig == nil {
		return nil, wrapVerb(verb, ErrHangup)
	}
	return sig.Endpoint(), nil
}

func (a *callActor) onCallerReq(ctx actor.Context, m *callerReq) {
	if a.ended || len(a.order) == 0 || a.legs[a.order[0]].ended {
		replyWith(ctx, m.ReplyAddr, &Reply{})
		return
	}
	replyWith(ctx, m.ReplyAddr, &Reply{LegID: a.order[0]})
}
