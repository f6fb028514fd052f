//go:build unix && !linux

package sip

// soRcvbufForce: no SO_RCVBUFFORCE here.
const soRcvbufForce = 0
