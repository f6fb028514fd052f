package testharness_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/media"
	"github.com/switchboard-voice/switchboard/media/audio"
	"github.com/switchboard-voice/switchboard/media/dsp"
	"github.com/switchboard-voice/switchboard/media/transport"
	"github.com/switchboard-voice/switchboard/sip"
	"github.com/switchboard-voice/switchboard/testharness"
)

// logBuffer collects a logger's lines (debug level), or any other text
// written from several goroutines, for inspection.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		_, _ = os.Stderr.Write(p)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// base64Run finds anything that could be an SDES key (30 or 28 bytes are
// 40 or 38 base64 characters) in a log.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/]{36,}={0,2}`)

// requireNoKeys fails if a log holds an inline key, any of keys (in
// base64, hex or as a Go byte slice) or anything key-shaped.
func requireNoKeys(t *testing.T, log string, keys ...[]byte) {
	t.Helper()
	if strings.Contains(strings.ToLower(log), "inline:") && !strings.Contains(log, "inline:(redacted)") {
		t.Errorf("a log line carries an a=crypto inline key")
	}
	for _, k := range keys {
		for _, enc := range []string{base64.StdEncoding.EncodeToString(k), fmt.Sprintf("%x", k), fmt.Sprint(k)} {
			if strings.Contains(log, enc) {
				t.Fatalf("key material in the logs: %q", enc)
			}
		}
	}
	if m := base64Run.FindString(log); m != "" {
		t.Fatalf("key-shaped string in the logs: %q", m)
	}
}

// Done means: baresip with its srtp module and mediaenc=srtp-mand (it
// offers RTP/SAVP with SDES only) calls the tone route and the echo route;
// audio is verified both ways by frequency, and the server's debug log
// shows the SRTP suite but no key.
func TestBaresipMandatorySRTP(t *testing.T) {
	for _, tc := range []struct {
		route  string
		toneHz int // what baresip plays
		wantHz float64
	}{
		{"tone", 440, 1000}, // baresip hears our 1 kHz, the flow hears its 440 Hz
		{"echo", 600, 600},  // baresip hears its own 600 Hz back
	} {
		t.Run(tc.route, func(t *testing.T) {
			users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret", SRTP: sip.SRTPRequired})
			var logs logBuffer
			var heard440 atomic.Bool
			srv := startServer(t, framework.Config{Users: users, Logger: logs.logger()}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
				if c.User() == "echo" {
					return c.Echo(ctx)
				}
				if err := c.Answer(ctx); err != nil {
					return err
				}
				if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
					if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); dsp.RMS(f.Samples) > 500 && fr > 430 && fr < 450 {
						heard440.Store(true)
					}
					return nil
				})); err != nil {
					return err
				}
				return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
			}))
			b := startBaresipOpts(t, srv, baresipOptions{extraConfig: "module srtp.so", accountParams: ";mediaenc=srtp-mand"},
				tc.toneHz, 6, "/dial sip:"+tc.route+"@"+srv.SIPAddr().String())
			waitRegistered(t, srv, "alice")
			b.expectHeard(t, tc.wantHz)
			if tc.route == "tone" && !heard440.Load() {
				t.Fatal("the flow never heard baresip's 440 Hz")
			}
			out := logs.String()
			if !regexp.MustCompile(`sip: answered.*srtp=(AES_CM_128_HMAC_SHA1_80|AEAD_AES_128_GCM)`).MatchString(out) {
				t.Fatalf("the call was not answered with SRTP; server log:\n%s", tail([]byte(out), 3000))
			}
			requireNoKeys(t, out)
			blog, _ := os.ReadFile(filepath.Join(b.dir, "baresip.log"))
			if !bytes.Contains(blog, []byte("SAVP")) && !bytes.Contains(bytes.ToLower(blog), []byte("srtp")) {
				t.Logf("baresip log does not mention SRTP:\n%s", tail(blog, 2000))
			}
		})
	}
}

// A plain RTP/AVP offer from a user or a trunk that requires SRTP gets
// 488; the same caller offering SRTP gets through and audio flows both
// ways; a user without the requirement may call in plain RTP. Neither
// side's debug log holds either key.
func TestSRTPRequiredRefusesPlainOffer(t *testing.T) {
	users := sip.NewDirectory(
		sip.Account{Name: "alice", Password: "s3cret", SRTP: sip.SRTPRequired},
		sip.Account{Name: "bob", Password: "s3cret"})
	// The route plays 1 kHz and counts the frames in which it hears the
	// phone's 440 Hz.
	var heard440 atomic.Int64
	toneRoute := framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		if err := c.Answer(ctx); err != nil {
			return err
		}
		if err := c.Listen(ctx, media.SinkFunc(func(f *media.Frame) error {
			if fr, _ := dsp.DominantFrequency(f.Samples, f.Rate, 100, 3800, 10); dsp.RMS(f.Samples) > 500 && fr > 430 && fr < 450 {
				heard440.Add(1)
			}
			return nil
		})); err != nil {
			return err
		}
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
	})
	var srvLogs logBuffer
	srv := startServer(t, framework.Config{Users: users, Logger: srvLogs.logger()}, toneRoute)
	call := func(t *testing.T, srv *framework.Server, user string, policy sip.SRTPPolicy, logs *logBuffer) (*testharness.PhoneCall, error) {
		phone := newPhoneWith(t, testharness.PhoneOptions{User: user, Password: "s3cret", SRTP: policy, Logger: logs.logger()})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return phone.Call(ctx, uri(srv, "tone"))
	}
	want488 := func(t *testing.T, err error) {
		t.Helper()
		var se *sip.StatusError
		if !errors.As(err, &se) || se.Code != 488 {
			t.Fatalf("plain offer: %v, want 488", err)
		}
	}
	// connected checks audio both ways: the phone hears the route's
	// 1 kHz and the route hears the phone's 440 Hz.
	connected := func(t *testing.T, pc *testharness.PhoneCall, wantSRTP bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		defer func() { _ = pc.Hangup(ctx) }()
		before := heard440.Load()
		pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
		if _, err := pc.WaitTone(ctx, 1000, 20); err != nil {
			t.Fatalf("phone does not hear the 1 kHz tone: %v", err)
		}
		for end := time.Now().Add(5 * time.Second); heard440.Load()-before < 10; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("the route heard the phone's 440 Hz in %d frames, want >= 10", heard440.Load()-before)
			}
		}
		keys := pc.Leg.Endpoint().Config().SRTP
		if (keys != nil) != wantSRTP {
			t.Fatalf("SRTP keys on the phone's leg: %v, want SRTP=%v", keys, wantSRTP)
		}
		if st := pc.Leg.Endpoint().Stats(); st.SRTPAuthFailures != 0 {
			t.Fatalf("%d SRTP authentication failures", st.SRTPAuthFailures)
		}
	}

	t.Run("user requiring SRTP offers plain RTP", func(t *testing.T) {
		var logs logBuffer
		_, err := call(t, srv, "alice", sip.SRTPOff, &logs)
		want488(t, err)
		if !strings.Contains(srvLogs.String(), "plain RTP offered where SRTP is required") {
			t.Error("no log line for the refused offer")
		}
	})
	t.Run("user requiring SRTP offers SRTP", func(t *testing.T) {
		var logs logBuffer
		pc, err := call(t, srv, "alice", sip.SRTPRequired, &logs)
		if err != nil {
			t.Fatal(err)
		}
		keys := *pc.Leg.Endpoint().Config().SRTP
		connected(t, pc, true)
		requireNoKeys(t, logs.String()+srvLogs.String(), keys.Local, keys.Remote)
	})
	t.Run("user without requirement offers plain RTP", func(t *testing.T) {
		var logs logBuffer
		pc, err := call(t, srv, "bob", sip.SRTPOff, &logs)
		if err != nil {
			t.Fatal(err)
		}
		connected(t, pc, false)
	})
	t.Run("trunk requiring SRTP", func(t *testing.T) {
		// On loopback every peer is the trunk at 127.0.0.1.
		var logs logBuffer
		trunkSrv := startServer(t, framework.Config{Logger: logs.logger(),
			Trunks: []sip.Trunk{{Name: "carrier", Host: "127.0.0.1", SRTP: sip.SRTPRequired}}}, toneRoute)
		_, err := call(t, trunkSrv, "", sip.SRTPOff, &logs)
		want488(t, err)
		pc, err := call(t, trunkSrv, "", sip.SRTPRequired, &logs)
		if err != nil {
			t.Fatal(err)
		}
		connected(t, pc, true)
	})
}

// A flow bridges a plain RTP caller to a user who requires SRTP: the
// server's outbound leg offers RTP/SAVP, the user's phone answers it, and
// the passthrough bridge decrypts on one leg and re-protects (or sends
// plain) on the other, so both phones hear each other.
func TestSRTPDialUserAndPassthrough(t *testing.T) {
	users := sip.NewDirectory(
		sip.Account{Name: "alice", Password: "s3cret", SRTP: sip.SRTPRequired},
		sip.Account{Name: "bob", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Dial(ctx, "alice", framework.DialOptions{Timeout: 10 * time.Second})
	}))
	// alice's phone answers SRTP offers (and would refuse plain ones).
	h := testharness.New(t, srv)
	alice := h.Phone(testharness.PhoneOptions{RTPPortMin: 41000, RTPPortMax: 41999, SRTP: sip.SRTPRequired})
	h.Register(alice, "", "alice", "s3cret")
	bob := h.Phone(testharness.PhoneOptions{RTPPortMin: 42000, RTPPortMax: 42999, User: "bob", Password: "s3cret"})
	caller := h.Call("alice", testharness.HarnessCallOptions{Name: "bob (plain)", Phone: bob})
	callee := h.ExpectIncoming(alice, "alice (SRTP)")
	if callee.Leg.Endpoint().Config().SRTP == nil {
		t.Fatal("the call to alice is not SRTP")
	}
	if caller.Leg.Endpoint().Config().SRTP != nil {
		t.Fatal("bob's plain call became SRTP")
	}
	caller.ExpectTwoWayAudio(callee, 440, 1000)
	if n := callee.Leg.Endpoint().Stats().SRTPAuthFailures; n != 0 {
		t.Fatalf("alice's leg: %d SRTP failures", n)
	}
}

// AEAD_AES_128_GCM against baresip: a phone offering only that suite
// calls baresip (srtp module, mandatory SRTP) directly; baresip answers
// with it (its log names the suite) and audio flows both ways.
func TestBaresipAnswersSRTPGCM(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Reject(ctx, 603)
	}))
	b := startBaresipOpts(t, srv, baresipOptions{extraConfig: "module srtp.so", accountParams: ";mediaenc=srtp-mand"}, 440, 8)
	waitRegistered(t, srv, "alice")
	h := testharness.New(t, srv)
	phone := h.Phone(testharness.PhoneOptions{SRTP: sip.SRTPRequired, SRTPSuites: []transport.SRTPSuite{transport.SRTPAEADAES128GCM}})
	call := h.Call("alice", testharness.HarnessCallOptions{Name: "the GCM call to baresip", Phone: phone, URI: fmt.Sprintf("sip:alice@127.0.0.1:%d", b.port)})
	if k := call.Leg.Endpoint().Config().SRTP; k == nil || k.Suite != transport.SRTPAEADAES128GCM {
		t.Fatalf("negotiated %v, want AEAD_AES_128_GCM", k)
	}
	b.expectTwoWay(t, call, 440)
	blog, _ := os.ReadFile(filepath.Join(b.dir, "baresip.log"))
	if !bytes.Contains(blog, []byte("AEAD_AES_128_GCM")) {
		t.Fatalf("baresip's log does not name AEAD_AES_128_GCM:\n%s", tail(blog, 3000))
	}
}

// "optional": a phone that prefers SRTP calls a phone that accepts only
// a suite it does not offer; the SAVP offer gets 488, the call is placed
// again with plain RTP and connects with audio. Against a peer that
// takes SRTP, "optional" ends up on SRTP.
func TestSRTPOptionalFallsBackToPlain(t *testing.T) {
	gcmOnly := newPhoneWith(t, testharness.PhoneOptions{SRTPSuites: []transport.SRTPSuite{transport.SRTPAEADAES128GCM}})
	anySuite := newPhoneWith(t, testharness.PhoneOptions{})
	caller := newPhoneWith(t, testharness.PhoneOptions{SRTP: sip.SRTPOptional, SRTPSuites: []transport.SRTPSuite{transport.SRTPAESCM128SHA1_80}})
	for _, tc := range []struct {
		name     string
		callee   *testharness.Phone
		wantSRTP bool
	}{
		{"callee refuses the suite", gcmOnly, false},
		{"callee takes SRTP", anySuite, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			pc, err := caller.Call(ctx, tc.callee.URI("x"))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = pc.Hangup(context.Background()) }()
			var callee *testharness.PhoneCall
			select {
			case callee = <-tc.callee.Incoming():
			case <-ctx.Done():
				t.Fatal("callee got no call")
			}
			if got := pc.Leg.Endpoint().Config().SRTP != nil; got != tc.wantSRTP {
				t.Fatalf("SRTP = %v, want %v", got, tc.wantSRTP)
			}
			callee.Play(audio.NewTone(audio.Tone{Freqs: []float64{1000}}))
			pc.Play(audio.NewTone(audio.Tone{Freqs: []float64{440}}))
			if _, err := pc.WaitTone(ctx, 1000, 20); err != nil {
				t.Fatalf("caller does not hear 1 kHz: %v", err)
			}
			if _, err := callee.WaitTone(ctx, 440, 20); err != nil {
				t.Fatalf("callee does not hear 440 Hz: %v", err)
			}
		})
	}
}

// Hold and unhold on an SRTP call: our re-INVITEs carry the current key
// and tag, the answers keep the stream on SRTP, and audio resumes after
// unhold without authentication failures.
func TestSRTPHoldUnhold(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret", SRTP: sip.SRTPRequired})
	srv := startServer(t, framework.Config{Users: users}, framework.HandlerFunc(func(ctx context.Context, c *framework.Call) error {
		return c.Play(ctx, audio.NewTone(audio.Tone{Freqs: []float64{1000}, Duration: 20 * time.Second}))
	}))
	phone := newPhoneWith(t, testharness.PhoneOptions{User: "alice", Password: "s3cret", SRTP: sip.SRTPRequired})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := phone.Call(ctx, uri(srv, "tone"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Hangup(context.Background()) }()
	if _, err := pc.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("no tone before hold: %v", err)
	}
	before := *pc.Leg.Endpoint().Config().SRTP
	if err := pc.Leg.Hold(ctx); err != nil {
		t.Fatalf("hold: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	if l, ok := pc.Analyse(200 * time.Millisecond); !ok || l.RMS > 100 {
		t.Fatalf("on hold the phone still hears rms %.0f (ok=%v)", l.RMS, ok)
	}
	if err := pc.Leg.Unhold(ctx); err != nil {
		t.Fatalf("unhold: %v", err)
	}
	after := pc.Leg.Endpoint().Config().SRTP
	if after == nil || !after.Equal(&before) {
		t.Fatalf("keys changed or SRTP dropped across hold/unhold: %v", after)
	}
	if _, err := pc.WaitTone(ctx, 1000, 20); err != nil {
		t.Fatalf("no tone after unhold: %v", err)
	}
	if f := pc.Leg.Endpoint().Stats().SRTPAuthFailures; f != 0 {
		t.Fatalf("%d SRTP failures after hold/unhold", f)
	}
}
