package sip

import (
	"net/netip"
	"testing"
	"time"
)

func TestAdmission(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	type try struct {
		src    netip.Addr
		authed bool
		gap    time.Duration
		want   Refusal
	}
	rep := func(n int, x try) []try {
		out := make([]try, n)
		for i := range out {
			out[i] = x
		}
		return out
	}
	cases := []struct {
		name  string
		lim   CallLimits
		tries []try
	}{
		{"guest concurrency", CallLimits{GuestCalls: 3, GuestRate: -1},
			append(rep(3, try{a, false, 0, Admitted}), try{a, false, 0, TooManyCalls}, try{b, false, 0, Admitted}, try{a, true, 0, Admitted})},
		{"guest rate", CallLimits{GuestCalls: -1, GuestRate: 2, GuestBurst: 4},
			append(rep(4, try{a, false, 0, Admitted}), try{a, false, 0, CallRateTooHigh}, try{a, false, 500 * time.Millisecond, Admitted}, try{a, false, 0, CallRateTooHigh}, try{b, false, 0, Admitted})},
		{"users have their own limit", CallLimits{GuestCalls: 1, UserCalls: 2},
			[]try{{a, false, 0, Admitted}, {a, false, 0, TooManyCalls}, {a, true, 0, Admitted}, {a, true, 0, Admitted}, {a, true, 0, TooManyCalls}}},
		{"no limits", CallLimits{GuestCalls: -1, UserCalls: -1, GuestRate: -1, GuestShare: -1}, rep(200, try{a, false, 0, Admitted})},
		{"guest share of the pool", CallLimits{GuestCalls: 1, GuestRate: -1, GuestShare: 0.003}, // 3 of 1000 ports
			[]try{{a, false, 0, Admitted}, {b, false, 0, Admitted}, {netip.MustParseAddr("192.0.2.3"), false, 0, Admitted},
				{netip.MustParseAddr("192.0.2.4"), false, 0, TooManyGuests}, {netip.MustParseAddr("192.0.2.4"), true, 0, Admitted}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ad := newAdmission(c.lim, 1000)
			now := time.Unix(1e6, 0)
			ad.now = func() time.Time { return now }
			for i, x := range c.tries {
				now = now.Add(x.gap)
				_, got := ad.admit(x.src, x.authed)
				if got != x.want {
					t.Fatalf("try %d from %v (authenticated %v): %v, want %v", i, x.src, x.authed, got, x.want)
				}
			}
		})
	}
	// Released calls free their slot, once.
	ad := newAdmission(CallLimits{GuestCalls: 1, GuestRate: -1}, 1000)
	rel, why := ad.admit(a, false)
	if why != Admitted {
		t.Fatal(why)
	}
	rel()
	rel()
	if _, why := ad.admit(a, false); why != Admitted {
		t.Fatalf("after release: %v", why)
	}
	if _, why := ad.admit(a, false); why != TooManyCalls {
		t.Fatalf("double release freed two slots: %v", why)
	}
}
