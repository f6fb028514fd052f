#!/bin/bash
# percall.sh BIN RATE SECS [serve flags...]
#
# One fresh `BIN serve` on loopback, SIPp placing RATE 1-second calls/s
# (docs/benchmarks/uac_1s.xml, route "reflect", no RTP) for SECS seconds;
# prints the calls refused (503), answered, completed and failed, the
# server's CPU (user + system, from /proc) per call, and its peak RSS.
# For A/B pairs of two builds, interleave runs: this machine's runs of
# one build differ by up to ±8 %.
#
#   PERF=file   also record `perf record -F 999 -g` of the server into
#               file, from 3 s in for SECS-4 s (perf must be installed)
#   PROF=file   also fetch a Go CPU profile (serve --pprof) into file
#   SYSCALLS=file  also count the server's system calls and context
#               switches (`perf stat`, from 3 s in for SECS-4 s) into
#               file, and print the most frequent per call. Tracing
#               every system call slows the server: take CPU per call
#               from runs without it
#   DIAGO=1     BIN is docs/benchmarks/diago-echo (built with go build
#               there), not switchboard: the same calls against diago,
#               for a ratio measured the same day (serve flags ignored)
#   FLOOR=1     BIN is docs/benchmarks/sipgo-floor: the same calls against
#               a server that does nothing but sipgo's answer (serve flags
#               ignored; it collects at GOGC 400 like serve unless $GOGC
#               is set)
#
# Ports: SIP 57060, HTTP 57080, SIPp 57061 and media 57100, RTP
# 27000-55999. Pass --rtp-port-rest 500ms at 8,000/s and above, or the
# port pool runs out. Run as a user whose descriptor limit allows the
# calls up (ulimit -n is raised to the hard limit).
set -u
BIN=$1 RATE=$2 SECS=$3
shift 3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
D=$(mktemp -d /tmp/percall.XXXX)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ -n "${DIAGO:-}" ]; then
	"$BIN" -addr 127.0.0.1:57060 -rtp-ports 27000-55999 -log-level error >"$D/server.log" 2>&1 &
elif [ -n "${FLOOR:-}" ]; then
	"$BIN" -addr 127.0.0.1:57060 >"$D/server.log" 2>&1 &
else
	"$BIN" serve --sip-addr 127.0.0.1:57060 --tls-addr - --http-addr 127.0.0.1:57080 --webrtc-addr - \
		--rtp-ports 27000-55999 --guest-calls -1 --guest-rate -1 --log-level error --data-dir - --pprof "$@" \
		>"$D/server.log" 2>&1 &
fi
SPID=$!
trap 'kill $SPID 2>/dev/null' EXIT
for _ in $(seq 50); do
	if [ -n "${DIAGO:-}${FLOOR:-}" ]; then ss -lun | grep -q 127.0.0.1:57060 && break; else curl -sf http://127.0.0.1:57080/metrics >/dev/null && break; fi
	sleep 0.1
done
sleep 1
cpu() { sed 's/.*) //' "/proc/$SPID/stat" | awk '{print $12 + $13}'; } # utime + stime, clock ticks
c0=$(cpu)
AUX=()
if [ -n "${PERF:-}" ]; then
	(sleep 3; perf record -F 999 -g -p "$SPID" -o "$PERF" -- sleep $((SECS - 4)) >/dev/null 2>&1) &
	AUX+=($!)
fi
if [ -n "${SYSCALLS:-}" ]; then
	(sleep 3; perf stat -e 'syscalls:sys_enter_*' -e context-switches -e cpu-migrations -p "$SPID" -o "$SYSCALLS" -- sleep $((SECS - 4))) &
	AUX+=($!)
fi
if [ -n "${PROF:-}" ]; then
	(sleep 2; curl -s -o "$PROF" "http://127.0.0.1:57080/debug/pprof/profile?seconds=$((SECS - 3))") &
	AUX+=($!)
fi
(cd "$D" && timeout -s INT $((SECS + 90)) sipp -sf "$ROOT/docs/benchmarks/uac_1s.xml" -s reflect -r "$RATE" -d 1000 \
	-m $((RATE * SECS)) -l $((RATE * 4 + 100)) -i 127.0.0.1 -p 57061 -mp 57100 -nostdin -buff_size 4194304 \
	-recv_timeout 10s -timeout $((SECS + 60))s -trace_stat -stf "$D/stat.csv" -fd 1 127.0.0.1:57060 >"$D/sipp.out" 2>&1)
c1=$(cpu)
hwm=$(awk '/VmHWM/{print $2}' "/proc/$SPID/status")
for p in "${AUX[@]}"; do wait "$p"; done
read -r ok failed < <(awk -F';' 'NR==1{for(i=1;i<=NF;i++){if($i=="SuccessfulCall(C)")a=i;if($i=="FailedCall(C)")b=i};next}{x=$a;y=$b}END{print x, y}' "$D/stat.csv")
r503=$(awk '/503 <----/{print $3; exit}' "$D/sipp.out")
answered=$(awk '/200 <----------  E-RTD1/{print $4; exit}' "$D/sipp.out")
completed=$(awk '/BYE -+>/{f=1;next} f&&/200 <-+/{print $3; exit}' "$D/sipp.out")
ticks=$(getconf CLK_TCK)
echo "refused_503=${r503:-0} answered=${answered:-0} completed=${completed:-0} failed=$failed" \
	"cpu_s=$(echo "($c1-$c0)/$ticks" | bc -l | cut -c1-6)" \
	"cpu_per_call_ms=$(echo "($c1-$c0)*1000/$ticks/($ok+$failed)" | bc -l | cut -c1-6)" \
	"peak_rss_mib=$((hwm / 1024)) (raw: $D)"
if [ -n "${SYSCALLS:-}" ]; then
	# Calls placed while perf counted: RATE per second for SECS-4 s.
	awk -v c=$((RATE * (SECS - 4))) '$1 ~ /^[0-9,]+$/ {n = $1; gsub(",", "", n); if (n > 0) printf "%8.2f per call  %s\n", n / c, $2}' "$SYSCALLS" | sort -rn | head -8
fi
