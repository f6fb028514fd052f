// Command sipgo-floor is the signaling floor of docs/benchmarks/sidebyside.sh:
// the least a server built on emiago/sipgo does for a call. It answers every
// INVITE with 200 and a fixed SDP through sipgo's DialogServerSession (as
// Switchboard and diago do), takes the ACK and the BYE, and nothing else: no
// RTP socket, no media, no SDP negotiation, no call state beyond sipgo's own.
// What a call costs it is what sipgo's transport, parser, transactions and
// dialogs cost, the part of every sipgo server's per-call CPU that the server
// itself cannot cut. It is its own Go module (a nested go.mod), outside
// Switchboard's ./..., like diago-echo.
//
//	go build -o sipgo-floor . && ./sipgo-floor -addr 127.0.0.1:56062
//
// Its collector runs at GOGC 400 unless $GOGC is set or -gogc says
// otherwise: the default of `switchboard serve`, so that the floor and the
// server it is a floor for trade memory for CPU alike (at the runtime's
// default of 100 the floor spends a sixth of its CPU collecting, and its
// cost per call is a quarter higher; docs/BENCHMARKS.md, twelfth session).
//
// On SIGINT or SIGTERM it stops listening and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:56062", "UDP host:port to listen for SIP on")
	gogc := flag.Int("gogc", 400, "GC target percentage when $GOGC is not set (switchboard serve's default)")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(*gogc)
	}
	if err := run(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "sipgo-floor:", err)
		os.Exit(1)
	}
}

func run(addr string) error {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("port %q: %w", portText, err)
	}
	slog.SetLogLoggerLevel(slog.LevelError)
	ua, err := sipgo.NewUA()
	if err != nil {
		return err
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return err
	}
	dialogs := sipgo.NewDialogServerCache(nil, sip.ContactHeader{Address: sip.Uri{Host: host, Port: port}})
	// The answer names a port nobody listens on: SIPp's plain UAC sends no RTP.
	sdp := []byte("v=0\r\no=- 1 1 IN IP4 " + host + "\r\ns=-\r\nc=IN IP4 " + host +
		"\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		d, err := dialogs.ReadInvite(req, tx)
		if err != nil {
			slog.Error("invite", "error", err)
			return
		}
		if err := d.RespondSDP(sdp); err != nil {
			return // no ACK, or the caller went away
		}
		<-d.Context().Done() // the BYE ends the dialog (as a diago handler waits)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = dialogs.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dialogs.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = srv.ListenAndServe(ctx, "udp", addr)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
