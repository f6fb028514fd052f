// Command switchboard runs the Switchboard server with the demo call flows.
//
//	switchboard [serve] [flags]
//	switchboard load [flags]   simulated callers against a SIP server (load -help)
//
// Routes: "echo" (echo test), "tone" (continuous 1 kHz tone), "ivr" (demo
// menu); every other number goes to the menu.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	sipgosip "github.com/emiago/sipgo/sip"
	"github.com/switchboard-voice/switchboard/apps"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/sip"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "load":
		err = load(args, os.Stdout, os.Stderr)
	case "help":
		fmt.Println("usage: switchboard [serve] [flags]   run the server (switchboard serve -h lists the flags)\n" +
			"       switchboard load [flags]      simulate callers against a SIP server (switchboard load -h)")
	default:
		err = fmt.Errorf("unknown command %q (known: serve, load)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	sipAddr := fs.String("sip-addr", "0.0.0.0:5060", "SIP listen address (UDP and TCP)")
	tlsAddr := fs.String("tls-addr", "0.0.0.0:5061", `SIP over TLS listen address ("-" disables)`)
	tlsCert := fs.String("tls-cert", "", "PEM certificate for SIP over TLS (default: a generated self-signed one, for development)")
	tlsKey := fs.String("tls-key", "", "PEM private key for --tls-cert")
	httpAddr := fs.String("http-addr", ":8080", `HTTP listen address ("-" disables)`)
	rtpPorts := fs.String("rtp-ports", "10000-20000", "RTP port range")
	publicIP := fs.String("public-ip", "", "IP address to advertise in SDP and Contact (behind 1:1 NAT)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	usersFile := fs.String("users", "", "TOML file of SIP accounts ([[users]] name, password) that may register")
	trunksFile := fs.String("trunks", "", "TOML file of SIP trunks ([[trunks]] name, host, username, password, caller_id, dids, register)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	sipgosip.SetDefaultLogger(log.With("component", "sipgo"))

	cfg := framework.Config{SIPAddr: *sipAddr, HTTPAddr: *httpAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, Logger: log}
	if *tlsAddr != "-" {
		cfg.TLSAddr = *tlsAddr
	}
	lo, hi, ok := strings.Cut(*rtpPorts, "-")
	min, err1 := strconv.Atoi(lo)
	max, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || min <= 0 || max < min {
		return fmt.Errorf("--rtp-ports %q: want MIN-MAX", *rtpPorts)
	}
	cfg.RTPPortMin, cfg.RTPPortMax = min, max
	if *publicIP != "" {
		ip, err := netip.ParseAddr(*publicIP)
		if err != nil {
			return fmt.Errorf("--public-ip: %w", err)
		}
		cfg.PublicIP = ip
	}

	if *usersFile != "" {
		dir, err := sip.LoadDirectory(*usersFile)
		if err != nil {
			return err
		}
		cfg.Users = dir
	}
	if *trunksFile != "" {
		trunks, err := sip.LoadTrunks(*trunksFile)
		if err != nil {
			return err
		}
		cfg.Trunks = trunks
	}

	prompts := apps.DemoPrompts()
	router := framework.NewRouter()
	router.Handle("echo", apps.Echo(prompts))
	router.Handle("tone", apps.Tone(1000))
	router.HandleFunc("reflect", func(ctx context.Context, c *framework.Call) error {
		return c.Echo(ctx) // instant echo without the announcement: load tests
	})
	router.HandleFunc("conf", func(ctx context.Context, c *framework.Call) error {
		return c.Join(ctx, "demo", framework.JoinOptions{})
	})
	ivr := &apps.IVR{Prompts: prompts}
	router.Handle("ivr", ivr)
	router.Default(ivr)
	var handler framework.Handler = router
	if cfg.Users != nil {
		// Registered users are reachable by name; everything else as above.
		handler = apps.Extensions(cfg.Users, router)
	}

	srv, err := framework.NewServer(cfg, handler)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return
		}
		sipAddr := srv.SIPAddr()
		host := sipAddr.Addr().String()
		if sipAddr.Addr().IsUnspecified() {
			host = "127.0.0.1"
		}
		extra := ""
		if t := srv.TLSAddr(); t.IsValid() {
			extra += fmt.Sprintf("  TLS:  %s (SIP over TLS)\n", t)
		}
		if h := srv.HTTPAddr(); h != "" {
			extra += fmt.Sprintf("  WS:   ws://%s/sip (SIP over WebSocket)\n", displayHTTP(h))
		}
		fmt.Printf("\nSwitchboard is listening.\n  SIP:  %s (UDP and TCP)\n%s  HTTP: http://%s/\n\n"+
			"Call it from a SIP softphone (no registration needed):\n"+
			"  sip:ivr@%s:%d   demo menu (1 tone, 2 echo, 3 read back digits)\n"+
			"  sip:echo@%s:%d  echo test\n  sip:tone@%s:%d  1 kHz tone\n  sip:conf@%s:%d  conference room\n\nCtrl-C stops it (active calls get BYE).\n",
			sipAddr, extra, displayHTTP(srv.HTTPAddr()), host, sipAddr.Port(), host, sipAddr.Port(), host, sipAddr.Port(), host, sipAddr.Port())
	}()
	if err := srv.ListenAndServe(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func displayHTTP(addr string) string {
	if strings.HasPrefix(addr, "[::]:") {
		return "localhost:" + strings.TrimPrefix(addr, "[::]:")
	}
	if strings.HasPrefix(addr, "0.0.0.0:") {
		return "localhost:" + strings.TrimPrefix(addr, "0.0.0.0:")
	}
	return addr
}
