package framework

import (
	"os"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

func init() {
	if v := os.Getenv("EXP_TIMER_L"); v != "" {
		d, _ := time.ParseDuration(v)
		gosip.Timer_L = d
	}
	if v := os.Getenv("EXP_TIMER_J"); v != "" {
		d, _ := time.ParseDuration(v)
		gosip.Timer_J = d
	}
}
