package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Register registers user at registrar (host:port, optionally followed by
// ";transport=tcp" or tls) once, answering a digest challenge with
// password, and returns the lifetime the registrar granted. expires 0
// unregisters. Phones in the test harness and trunks that must register
// use it; refreshing is the caller's loop. Over TCP or TLS the connection
// the REGISTER opened stays the registrar's way back to us.
func (a *Agent) Register(ctx context.Context, registrar, user, password string, expires time.Duration) (time.Duration, error) {
	hostPort, params, _ := strings.Cut(registrar, ";")
	transport := "UDP"
	for _, p := range strings.Split(params, ";") {
		if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(strings.TrimSpace(k), "transport") {
			transport = strings.ToUpper(strings.TrimSpace(v))
		}
	}
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return 0, fmt.Errorf("sip: register at %q: %w", registrar, err)
	}
	port, _ := strconv.Atoi(portStr)
	remote := netip.Addr{}
	if ip, err := netip.ParseAddr(host); err == nil {
		remote = ip
	}
	ip := a.advertiseIP(remote)
	ruri := sip.Uri{Scheme: "sip", Host: host, Port: port}
	if transport != "UDP" {
		ruri.UriParams = sip.NewParams()
		ruri.UriParams.Add("transport", strings.ToLower(transport))
	}
	req := sip.NewRequest(sip.REGISTER, ruri)
	req.SetTransport(transport)
	aor := sip.Uri{Scheme: "sip", User: user, Host: host}
	req.AppendHeader(newFrom("", aor))
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	contact := a.contactFor(ip, transport)
	contact.Address.User = user
	req.AppendHeader(contact)
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	// RFC 3261 10.2: every REGISTER of one AOR to one registrar shares a
	// Call-ID, with CSeq growing; registrars may treat a new Call-ID as a
	// new client.
	key := registrar + "|" + user
	a.mu.Lock()
	rs, ok := a.regState[key]
	if !ok {
		rs = &regState{callID: sip.GenerateTagN(24), cseq: 1}
		a.regState[key] = rs
	}
	callID := sip.CallIDHeader(rs.callID)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: rs.cseq, MethodName: sip.REGISTER})
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		rs.cseq = max(rs.cseq, req.CSeq().SeqNo+1)
		a.mu.Unlock()
	}()
	res, err := a.clientFor("UDP").Do(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("sip: register %s at %s: %w", user, registrar, err)
	}
	if res.StatusCode == 401 || res.StatusCode == 407 {
		req.RemoveHeader("Via")
		res, err = a.clientFor("UDP").DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: user, Password: password})
		if err != nil {
			return 0, fmt.Errorf("sip: register %s at %s: %w", user, registrar, err)
		}
	}
	if res.StatusCode != 200 {
		return 0, fmt.Errorf("sip: register %s at %s: %w", user, registrar, statusError(res.StatusCode, res.Reason))
	}
	granted := expires
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok && c.Address.User == user {
			if v, ok := c.Params.Get("expires"); ok {
				if n, err := strconv.Atoi(v); err == nil {
					granted = time.Duration(n) * time.Second
				}
			}
		}
	}
	return granted, nil
}

// regState is the Call-ID and next CSeq of our registrations of one user
// at one registrar.
type regState struct {
	callID string
	cseq   uint32
}
