package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Trunk is a SIP trunk to a carrier: where PSTN calls go out, and which
// source address and DIDs mark calls coming in.
type Trunk struct {
	Name      string `toml:"name"`
	Host      string `toml:"host"`
	Port      int    `toml:"port"`      // default 5060
	Transport string `toml:"transport"` // "udp" (default) or "tcp"
	Username  string `toml:"username"`
	Password  string `toml:"password"`
	// Register makes the agent register Username at the carrier and
	// refresh it (for carriers that send inbound calls to a registration).
	Register bool `toml:"register"`
	// CallerID is the From user of calls out through the trunk (unless
	// the dial names one).
	CallerID string `toml:"caller_id"`
	// Trusted says the carrier is inside our trust domain (RFC 3325):
	// calls out through it carry a P-Asserted-Identity (and, for a caller
	// who asked for privacy, "Privacy: id" with the real identity rather
	// than an anonymous From); a P-Asserted-Identity on its inbound calls
	// is believed. Untrusted peers get neither.
	Trusted bool `toml:"trusted"`
	// DIDs are the numbers the carrier delivers to us; an inbound call to
	// one of them from the trunk's address is recognised as the trunk's.
	DIDs []string `toml:"dids"`
	// SRTP is the trunk's SRTP policy ("", "optional", "required"):
	// whether calls out offer RTP/SAVP, and whether plain RTP offers
	// from the trunk are refused (488).
	SRTP SRTPPolicy `toml:"srtp"`
}

// Addr returns host:port.
func (t Trunk) Addr() string {
	port := t.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(port))
}

// URI returns the request URI for dialling number through the trunk.
func (t Trunk) URI(number string) string {
	u := "sip:" + number + "@" + t.Addr()
	if strings.EqualFold(t.Transport, "tcp") {
		u += ";transport=tcp"
	}
	return u
}

// LoadTrunks reads the [[trunks]] tables of a TOML file.
func LoadTrunks(path string) ([]Trunk, error) {
	f, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	for i, t := range f.Trunks {
		if t.Name == "" || t.Host == "" {
			return nil, fmt.Errorf("sip: trunks file %s: trunk %d needs a name and a host", path, i+1)
		}
	}
	return f.Trunks, nil
}

// trunkFor returns the trunk an inbound request comes from: its source
// address must be the trunk host's (resolved) address.
func (a *Agent) trunkFor(src netip.Addr) (Trunk, bool) {
	for _, t := range a.cfg.Trunks {
		for _, ip := range a.trunkDNS.resolve(t.Host) {
			if ip == src.Unmap() {
				return t, true
			}
		}
	}
	return Trunk{}, false
}

// Trunk returns the configured trunk called name.
func (a *Agent) Trunk(name string) (Trunk, bool) {
	for _, t := range a.cfg.Trunks {
		if t.Name == name {
			return t, true
		}
	}
	return Trunk{}, false
}

// DialTrunk calls number through the named trunk, answering its digest
// challenge (401 or 407) with the trunk's credentials and presenting its
// caller id unless opts sets one.
func (a *Agent) DialTrunk(ctx context.Context, trunk, number string, opts DialOptions) (*Leg, error) {
	t, ok := a.Trunk(trunk)
	if !ok {
		return nil, fmt.Errorf("sip: no trunk %q", trunk)
	}
	if opts.FromUser == "" {
		opts.FromUser = t.CallerID
	}
	if opts.Username == "" {
		opts.Username, opts.Password = t.Username, t.Password
	}
	if opts.SRTP == SRTPOff {
		opts.SRTP = t.SRTP
	}
	opts.Trusted = opts.Trusted || t.Trusted
	leg, err := a.DialURI(ctx, t.URI(number), opts)
	if err != nil {
		return nil, err
	}
	leg.trunk = t.Name
	return leg, nil
}

// registerTrunks keeps the registrations of trunks with Register set,
// refreshing at half the granted lifetime (retrying after 30 s on
// failure), until ctx ends; then it unregisters.
func (a *Agent) registerTrunks(ctx context.Context) {
	var wg sync.WaitGroup
	for _, t := range a.cfg.Trunks {
		if !t.Register {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			log := a.log.With("trunk", t.Name)
			for {
				granted, err := a.Register(ctx, t.Addr(), t.Username, t.Password, time.Hour)
				wait := 30 * time.Second
				if err != nil {
					log.Warn("sip: trunk registration failed", "error", err)
				} else {
					log.Info("sip: trunk registered", "expires", granted)
					wait = max(granted/2, 10*time.Second)
				}
				select {
				case <-ctx.Done():
					uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, _ = a.Register(uctx, t.Addr(), t.Username, t.Password, 0)
					cancel()
					return
				case <-time.After(wait):
				}
			}
		}()
	}
	wg.Wait()
}

// isDID reports whether number is one of the trunk's DIDs (or the trunk
// lists none, which accepts every number).
func (t Trunk) isDID(number string) bool {
	return len(t.DIDs) == 0 || slices.Contains(t.DIDs, number)
}
