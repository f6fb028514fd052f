package sip

// soRcvbufForce is SO_RCVBUFFORCE (Linux only; CAP_NET_ADMIN).
const soRcvbufForce = 0x21
