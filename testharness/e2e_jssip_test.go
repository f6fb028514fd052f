package testharness_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

// jssipPage registers as alice with JsSIP over /sip, calls tone with
// WebRTC media, and measures what it hears, like the softphone does.
const jssipPage = `<!doctype html><meta charset="utf-8"><script src="/jssip/jssip.min.js"></script><script>
window.result = { registered: false, freq: 0, error: "" };
const host = location.hostname;
const ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface("ws://" + location.host + "/sip")],
  uri: "sip:alice@" + host, password: "s3cret", register: true });
ua.on("registrationFailed", (e) => { window.result.error = "registration: " + e.cause; });
ua.on("registered", () => {
  window.result.registered = true;
  const session = ua.call("sip:tone@" + host, { mediaConstraints: { audio: true, video: false },
    pcConfig: { iceServers: [] } });
  session.on("failed", (e) => { window.result.error = "call: " + e.cause; });
  session.connection.addEventListener("track", (ev) => {
    // Chrome feeds a remote track to WebAudio only while a media element plays it.
    const audio = new Audio();
    audio.srcObject = new MediaStream([ev.track]);
    audio.play();
    const ctx = new AudioContext();
    const an = ctx.createAnalyser();
    an.fftSize = 4096;
    ctx.createMediaStreamSource(new MediaStream([ev.track])).connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    setInterval(() => {
      an.getFloatFrequencyData(bins);
      let best = 1;
      for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
      window.result.freq = bins[best] > -70 ? best * ctx.sampleRate / an.fftSize : 0;
    }, 100);
  });
});
ua.start();
</script>`

// A browser SIP library (JsSIP, vendored under testdata for this test
// only) registers over SIP on WebSocket with digest auth and calls tone
// with WebRTC media (ICE, DTLS-SRTP), which the browser bridge answers:
// ~1 kHz is heard in the page.
func TestJsSIPRegistersAndCallsTone(t *testing.T) {
	users := sip.NewDirectory(sip.Account{Name: "alice", Password: "s3cret"})
	r := framework.NewRouter()
	r.Handle("tone", apps.Tone(1000))
	srv := startServer(t, framework.Config{HTTPAddr: "127.0.0.1:0", Users: users,
		Browsers: &framework.BrowserConfig{TokenKey: []byte("test key of sixteen bytes or more"), ICEAddr: "127.0.0.1:0"}}, r)
	srv.Handle("GET /jssip/", http.StripPrefix("/jssip/", http.FileServer(http.Dir("testdata/jssip"))))
	srv.HandleFunc("GET /jssip-test", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, jssipPage)
	})
	ctx := headlessChromium(t, "")
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, chromedp.Navigate(fmt.Sprintf("http://%s/jssip-test", srv.HTTPAddr()))); err != nil {
		t.Fatal(err)
	}
	var freq float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, err := chromedp.Run(tctx, chromedp.Evaluate[map[string]any](`window.result`))
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := res["error"].(string); e != "" {
			t.Fatalf("JsSIP: %s", e)
		}
		freq, _ = res["freq"].(float64)
		if freq > 960 && freq < 1040 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JsSIP's page hears %.0f Hz (registered %v), want ~1000", freq, res["registered"])
		}
	}
	if b := srv.Agent().Registrar().Lookup("alice"); len(b) != 1 || b[0].Transport != "WS" {
		t.Fatalf("alice's binding: %+v, want one over WS", b)
	}
	t.Logf("JsSIP heard %.0f Hz", freq)
}
