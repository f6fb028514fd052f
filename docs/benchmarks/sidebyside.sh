#!/usr/bin/env bash
# sidebyside.sh — issue 10's side-by-side benchmark, everything in ONE run:
#
#   1. Call-setup ladder. For each rate, for each server (a SIPp UAS; the
#      bare sipgo answerer of docs/benchmarks/sipgo-floor, what sipgo alone
#      costs a call; the emiago/diago echo server of docs/benchmarks/diago-echo;
#      `switchboard serve` with the reflect route), started fresh on its own
#      port: SIPp places 1-second calls at that rate for --step seconds; the
#      script records calls ok / failed / refused with 503, the rate SIPp
#      achieved, the server's CPU (utime+stime from /proc/PID/stat, before and
#      after), its peak RSS (VmHWM) and its RSS after --idle seconds without
#      calls. A server's ladder stops after the first rate with more than
#      --fail-pct % of calls failed. One markdown table per rate, with ratios
#      against the SIPp UAS, diago and the sipgo floor, then the highest rate
#      each server held.
#   2. Overload. At twice the highest rate Switchboard held (or --burst-rate),
#      a --burst-secs burst against Switchboard and against diago: 503s,
#      calls accepted (200) and how many of those completed; then, the moment
#      the burst's calls are all placed, --after-rate calls/s for
#      --after-secs: when the first one succeeded and how many failed.
#   3. RTP. BenchmarkEchoVsFloor (media/echo_load_test.go: the media engine
#      against a plain UDP relay, same traffic, same run) and SIPp playing
#      g711a.pcap into the reflect route of Switchboard and diago in turn:
#      server CPU per echoed packet and the ratio.
#
# Run it from anywhere inside the repository, on a machine with nothing else
# running (SIPp shares the box with the server under test):
#
#   docs/benchmarks/sidebyside.sh                       # the full run (~25 min)
#   docs/benchmarks/sidebyside.sh --rates "200 400" --step 3 --idle 5 \
#       --burst-secs 3 --pcap-calls 200 --pcap-rounds 1 --echo-streams 200 --echo-window 2s
#
# SB_BIN=/path/to/switchboard in the environment measures that build
# instead of the one made from the tree (to compare builds in one window).
#
# Needs: go, sipp (Debian sip-tester), curl, ss. Every wait is bounded; every
# process it starts is killed on exit (trap). Results (raw SIPp statistics,
# /metrics scrapes, logs, results.tsv) stay in --out.
set -euo pipefail

# ---------------------------------------------------------------- options
RATES="1000 2000 3000 4000 6000 8000"
STEP=10              # seconds of calls per rate
CALL_MS=1000         # call length (SIPp -d)
IDLE=30              # seconds after the load before reading RSS
FAIL_PCT=0.1         # a rate is held when at most this % of calls fail
SERVERS="sipp sipgo-floor diago switchboard"
RTP_PORTS=27000-55999   # clear of this script's ports, 26000-26049
SB_ARGS=""           # extra flags for switchboard serve
BURST_RATE=0         # 0: twice the highest rate Switchboard held
BURST_SECS=10
AFTER_RATE=100
AFTER_SECS=5
DO_LADDER=1
DO_OVERLOAD=1
DO_RTP=1
ECHO_STREAMS=500,1000
ECHO_WINDOW=4s
PCAP_RATE=60
PCAP_CALLS=2000
PCAP_ROUNDS=2
OUT=""

usage() {
	awk 'NR > 1 && /^set -euo/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"
	cat <<EOF

Options (defaults in brackets):
  --rates "R1 R2 ..."   call rates of the ladder, calls/s [$RATES]
  --step S              seconds of calls per rate [$STEP]
  --call-ms MS          call length [$CALL_MS]
  --idle S              seconds idle after the load before reading RSS [$IDLE]
  --fail-pct P          highest failed % for a rate to count as held [$FAIL_PCT]
  --servers "..."       which of sipp sipgo-floor diago switchboard, in this
                        order [$SERVERS]
  --rtp-ports MIN-MAX   RTP ports of Switchboard and diago [$RTP_PORTS]; keep it
                        clear of 26000-26049 (the script's SIP, HTTP and SIPp ports)
  --sb-args "..."       extra flags for switchboard serve [none]
  --burst-rate R        overload burst rate [twice the highest rate Switchboard held]
  --burst-secs S        burst length [$BURST_SECS]
  --after-rate R        rate offered right after the burst [$AFTER_RATE]
  --after-secs S        its length [$AFTER_SECS]
  --no-ladder, --no-overload, --no-rtp   skip a part
  --echo-streams N,M    BenchmarkEchoVsFloor streams [$ECHO_STREAMS]
  --echo-window D       its measuring window [$ECHO_WINDOW]
  --pcap-rate R         SIPp pcap echo: calls/s [$PCAP_RATE]
  --pcap-calls N        calls per run [$PCAP_CALLS]
  --pcap-rounds N       rounds, each Switchboard then diago [$PCAP_ROUNDS]
  --out DIR             where raw results go [a new directory under /tmp]
EOF
}

while [ $# -gt 0 ]; do
	case "$1" in
	--rates) RATES=$2; shift ;;
	--step) STEP=$2; shift ;;
	--call-ms) CALL_MS=$2; shift ;;
	--idle) IDLE=$2; shift ;;
	--fail-pct) FAIL_PCT=$2; shift ;;
	--servers) SERVERS=$2; shift ;;
	--rtp-ports) RTP_PORTS=$2; shift ;;
	--sb-args) SB_ARGS=$2; shift ;;
	--burst-rate) BURST_RATE=$2; shift ;;
	--burst-secs) BURST_SECS=$2; shift ;;
	--after-rate) AFTER_RATE=$2; shift ;;
	--after-secs) AFTER_SECS=$2; shift ;;
	--no-ladder) DO_LADDER=0 ;;
	--no-overload) DO_OVERLOAD=0 ;;
	--no-rtp) DO_RTP=0 ;;
	--echo-streams) ECHO_STREAMS=$2; shift ;;
	--echo-window) ECHO_WINDOW=$2; shift ;;
	--pcap-rate) PCAP_RATE=$2; shift ;;
	--pcap-calls) PCAP_CALLS=$2; shift ;;
	--pcap-rounds) PCAP_ROUNDS=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "sidebyside: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

# Ports 26000-26049 are this script's: SIPp's media ports, then SIP and
# HTTP. They are below the kernel's ephemeral range (32768-60999 by
# default), so no other program's outgoing socket takes one by chance. RTP
# for the servers comes from --rtp-ports.
UAS_MP=26000 UAC_MP=26010 AFTER_MP=26020 PCAP_MP=26030   # SIPp -mp
UAS_PORT=26040       # SIPp UAS
DIAGO_PORT=26041     # diago-echo
SB_PORT=26042        # switchboard serve (SIP)
FLOOR_PORT=26043     # sipgo-floor
UAC_PORT=26044       # SIPp UAC of the ladder and of the burst
AFTER_PORT=26045     # SIPp UAC right after the burst
PCAP_PORT=26046      # SIPp UAC playing g711a.pcap
SB_HTTP=26048        # switchboard serve (/metrics)

# SIPp's UAC socket buffer (-buff_size, both ways; default 64 KiB): at
# thousands of calls a second SIPp's single thread falls behind its
# socket, and with 64 KiB it drops responses (a server's 200s, counted
# against the server). 4 MiB is Linux's usual net.core.rmem_max cap.
SIPP_BUF=4194304

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/docs/benchmarks
SCEN=$HERE/uac_1s.xml
PCAP_SCEN=$REPO/testharness/testdata/sipp/uac_pcap_load.xml
OUT=${OUT:-$(mktemp -d /tmp/sidebyside.XXXXXX)}
mkdir -p "$OUT"
TSV=$OUT/results.tsv
HZ=$(getconf CLK_TCK)

for b in go sipp curl ss; do
	command -v "$b" >/dev/null || { echo "sidebyside: $b not found (sipp: apt-get install sip-tester)" >&2; exit 1; }
done
# A server with thousands of calls up needs descriptors; so does SIPp.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------- process hygiene
PIDS=()    # background processes this script started and has not reaped
# forget PID: reaped, so its number may be another process's from now on.
forget() {
	local p keep=()
	for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		pkill -TERM -P "$p" 2>/dev/null || true # a subshell's children (timeout, sipp)
		kill -TERM "$p" 2>/dev/null || true
	done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# stop PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# wait_free PORT: until no UDP or TCP socket but a TCP one in TIME-WAIT
# (which does not stop a listener: it sets SO_REUSEADDR) has PORT (10 s at
# most); if one stays, say whose.
wait_free() {
	local i
	for i in $(seq 100); do
		{ ss -Haunp "sport = :$1"; ss -Htanp exclude time-wait "sport = :$1"; } | grep -q . || return 0
		sleep 0.1
	done
	echo "sidebyside: port $1 stays in use:" >&2
	{ ss -Haunp "sport = :$1"; ss -Htanp exclude time-wait "sport = :$1"; } >&2
	return 1
}

# wait_free_media MP: SIPp's media ports from -mp MP (it binds them at start).
wait_free_media() {
	local p
	for p in "$1" $(($1 + 1)) $(($1 + 2)) $(($1 + 3)); do wait_free "$p" || return 1; done
}

# wait_listen PID PORT: until process PID listens on PORT/udp (10 s at
# most); fails at once if PID exits.
wait_listen() {
	local i
	for i in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 1
		ss -Hlunp "sport = :$2" | grep -q "pid=$1," && return 0
		sleep 0.1
	done
	return 1
}

# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name).
cpu_ticks() { { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || echo; } | awk '{print $12 + $13}'; }
# kib PID FIELD: a /proc/PID/status value in KiB (VmRSS, VmHWM).
# Both print 0 for a process that is gone.
kib() { { cat "/proc/$1/status" 2>/dev/null || :; } | awk -v f="$2:" '$1 == f {v = $2} END {print v + 0}'; }

# ---------------------------------------------------------------- servers
# start_server NAME DIR: starts the server fresh, logs into DIR; sets SPID
# and SPORT (its SIP port).
start_server() {
	local name=$1 dir=$2 p
	for p in $UAS_PORT $DIAGO_PORT $SB_PORT $FLOOR_PORT $SB_HTTP; do wait_free "$p" || exit 1; done
	if [ "$name" = sipp ]; then wait_free_media "$UAS_MP" || exit 1; fi
	case "$name" in
	sipp)
		SPORT=$UAS_PORT
		(cd "$dir" && exec sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -mp "$UAS_MP" -nostdin) >"$dir/server.log" 2>&1 &
		;;
	diago)
		SPORT=$DIAGO_PORT
		"$OUT/bin/diago-echo" -addr "127.0.0.1:$DIAGO_PORT" -rtp-ports "$RTP_PORTS" -log-level error >"$dir/server.log" 2>&1 &
		;;
	sipgo-floor)
		SPORT=$FLOOR_PORT
		"$OUT/bin/sipgo-floor" -addr "127.0.0.1:$FLOOR_PORT" >"$dir/server.log" 2>&1 &
		;;
	switchboard)
		SPORT=$SB_PORT
		# The flags of docs/BENCHMARKS.md "SIPp 1-second calls, 10 s
		# steps" (reflect route, no intro prompt, guest limits off), with
		# the admission control at its defaults and /metrics on.
		# shellcheck disable=SC2086
		"${SB_BIN:-$OUT/bin/switchboard}" serve --sip-addr "127.0.0.1:$SB_PORT" --tls-addr - \
			--http-addr "127.0.0.1:$SB_HTTP" --webrtc-addr - --rtp-ports "$RTP_PORTS" \
			--guest-calls -1 --guest-rate -1 --log-level error --data-dir - $SB_ARGS \
			>"$dir/server.log" 2>&1 &
		;;
	*) echo "sidebyside: unknown server $name" >&2; exit 2 ;;
	esac
	SPID=$!
	PIDS+=("$SPID")
	if ! wait_listen "$SPID" "$SPORT"; then
		echo "sidebyside: $name did not listen on $SPORT within 10 s (or exited); its log:" >&2
		tail -20 "$dir/server.log" >&2
		exit 1
	fi
	if [ "$name" = switchboard ]; then
		local i
		for i in $(seq 50); do curl -sf "http://127.0.0.1:$SB_HTTP/metrics" >/dev/null && break; sleep 0.1; done
	fi
	sleep 1 # let it settle before the baseline
}

# scrape_metrics FILE: Switchboard's /metrics into FILE (empty on failure).
scrape_metrics() { curl -s -m 5 "http://127.0.0.1:$SB_HTTP/metrics" >"$1" 2>/dev/null || : >"$1"; }

# watch_pending FILE: samples switchboard_sip_invites_pending and
# switchboard_calls_active every 0.5 s until killed (for the knee).
watch_pending() {
	local f=$1
	while :; do
		curl -s -m 1 "http://127.0.0.1:$SB_HTTP/metrics" 2>/dev/null |
			awk -v t="$(date +%s.%N)" '/^switchboard_sip_invites_pending /{p=$2} /^switchboard_calls_active /{a=$2} END{print t, p, a}' >>"$f"
		sleep 0.5
	done
}

# ------------------------------------------------------------------ SIPp
# uac DIR RATE SECS LOCALPORT MEDIAPORT [extra sipp args]: runs the 1 s call
# scenario in DIR (SIPp writes its counts file there) and returns when
# SIPp exits: all calls ended, or the -timeout. Bounded by timeout(1) too.
uac() {
	local dir=$1 rate=$2 secs=$3 lport=$4 mport=$5 target=$6
	shift 6
	local calls=$((rate * secs))
	mkdir -p "$dir"
	wait_free "$lport" || exit 1
	wait_free_media "$mport" || exit 1
	(cd "$dir" && timeout -s INT $((secs + 90)) sipp -sf "$SCEN" -s reflect \
		-r "$rate" -d "$CALL_MS" -m "$calls" -l $((rate * 4 + 100)) \
		-i 127.0.0.1 -p "$lport" -mp "$mport" -nostdin -buff_size "$SIPP_BUF" \
		-recv_timeout 10s -timeout $((secs + 60))s \
		-trace_stat -stf "$dir/stat.csv" -fd 1 -trace_counts "$@" \
		"127.0.0.1:$target" >"$dir/sipp.out" 2>&1) || true
}

# sipp_stat DIR NAME: a column of SIPp's last statistics line (0 if absent).
sipp_stat() {
	awk -F';' -v want="$2" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == want) c = i; next}
		{v = $c} END {print (c && v != "") ? v + 0 : 0}' "$1/stat.csv" 2>/dev/null || echo 0
}
# count DIR COLUMN: a column of SIPp's last message-counts line, e.g.
# 4_503_Recv (calls refused with 503) or 5_200_Recv (calls answered).
count() {
	local f
	for f in "$1"/*_counts.csv; do break; done
	[ -f "$f" ] || { echo 0; return; }
	awk -F';' -v want="$2" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == want) c = i; next}
		{v = $c} END {print (c && v != "") ? v + 0 : 0}' "$f"
}
# placed_secs DIR: seconds from SIPp's start until it had placed its last
# call (from its 1 s statistics dumps).
placed_secs() {
	awk -F';' 'NR == 1 {for (i = 1; i <= NF; i++) {if ($i == "OutgoingCall(C)") o = i; if ($i == "ElapsedTime(C)") e = i}; next}
		{n[NR] = $o; t[NR] = $e; last = NR}
		END {for (i = 2; i <= last; i++) if (n[i] == n[last]) {split(t[i], a, ":"); print a[1] * 3600 + a[2] * 60 + a[3]; exit} print 0}' "$1/stat.csv" 2>/dev/null || echo 0
}

# summarise DIR: sets CREATED OK FAILED REFUSED ANSWERED NEVER from SIPp's
# files. The refused branch of uac_1s.xml ends the call normally, so SIPp
# counts a 503 as a successful call; it is moved to the failures here.
summarise() {
	local d=$1 succ fail
	CREATED=$(sipp_stat "$d" "OutgoingCall(C)")
	succ=$(sipp_stat "$d" "SuccessfulCall(C)")
	fail=$(sipp_stat "$d" "FailedCall(C)")
	REFUSED=$(count "$d" 4_503_Recv)
	ANSWERED=$(count "$d" 5_200_Recv)
	OK=$((succ - REFUSED))
	NEVER=$((CREATED - succ - fail)) # still up when SIPp gave up
	[ "$NEVER" -ge 0 ] || NEVER=0
	FAILED=$((fail + REFUSED + NEVER))
}

# Switchboard rests a released RTP port pair (2 s, or --rtp-port-rest in
# --sb-args) before reusing it, so 1 s calls at R/s hold about
# R × (call + rest + 0.5 s) pairs; past that its calls are refused for want
# of ports (no_ports in the last column), which is the port range, not the
# server, running out.
REST_S=$(echo " $SB_ARGS " | awk '{for (i = 1; i <= NF; i++) if ($i == "--rtp-port-rest" && i < NF) v = $(i + 1)
	else if ($i ~ /^--rtp-port-rest=/) v = substr($i, 17)}
	END {if (v ~ /ms$/) printf "%g", v / 1000; else if (v ~ /s$/) printf "%g", v + 0; else print 2}')
pairs=$(awk -v r="$RTP_PORTS" 'BEGIN {split(r, a, "-"); print int((a[2] - a[1]) / 2)}')
for rate in $RATES; do
	need=$(awk -v r="$rate" -v ms="$CALL_MS" -v rest="$REST_S" 'BEGIN {printf "%d", r * (ms / 1000 + rest + 0.5)}')
	if [ "$need" -gt "$pairs" ]; then
		echo "sidebyside: warning: $rate calls/s need ~$need RTP port pairs at Switchboard's ${REST_S} s port rest," \
			"--rtp-ports $RTP_PORTS has $pairs (widen it, or --sb-args \"--rtp-port-rest 500ms\")" >&2
	fi
done

# ----------------------------------------------------------------- build
mkdir -p "$OUT/bin"
log "building switchboard, diago-echo and sipgo-floor into $OUT/bin"
(cd "$REPO" && go build -o "$OUT/bin/switchboard" ./cmd/switchboard)
(cd "$HERE/diago-echo" && go build -o "$OUT/bin/diago-echo" .)
(cd "$HERE/sipgo-floor" && go build -o "$OUT/bin/sipgo-floor" .)
log "results in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"

printf 'server\trate\tcreated\tok\tfailed\trefused503\tnever\tachieved\tcpu_s\tbase_kib\tpeak_kib\tidle_kib\trejects\n' >"$TSV"

# ------------------------------------------------------------ 1: ladder
declare -A HELD STOPPED
run_step() {
	local name=$1 rate=$2 dir=$OUT/ladder/$2/$1 c0 c1 base peak idle placed achieved rejects=- wp=
	mkdir -p "$dir"
	start_server "$name" "$dir"
	base=$(kib "$SPID" VmRSS)
	if [ "$name" = switchboard ]; then
		watch_pending "$dir/pending.txt" &
		wp=$!
		PIDS+=("$wp")
	fi
	c0=$(cpu_ticks "$SPID")
	log "ladder: $name at $rate/s for ${STEP}s"
	uac "$dir" "$rate" "$STEP" "$UAC_PORT" "$UAC_MP" "$SPORT"
	c1=$(cpu_ticks "$SPID")
	peak=$(kib "$SPID" VmHWM)
	if ! kill -0 "$SPID" 2>/dev/null; then
		# Crashed, or killed from outside; its log says which.
		log "ladder: $name is gone (exited during the run); see $dir/server.log"
		rejects="server exited"
	fi
	if [ -n "$wp" ]; then
		kill "$wp" 2>/dev/null || true
		wait "$wp" 2>/dev/null || true
		forget "$wp"
		scrape_metrics "$dir/metrics.txt"
		[ "$rejects" = - ] || : >"$dir/metrics.txt"
		# Which admission rule refused calls, e.g. pending_invites=812.
		rejects=$(awk '/^switchboard_invites_rejected_total/ && $2 > 0 {match($1, /reason="[^"]*"/); printf "%s%s=%d", s, substr($1, RSTART + 8, RLENGTH - 9), $2; s = ","} END {if (!s) printf "none"}' "$dir/metrics.txt")
		[ -s "$dir/metrics.txt" ] || rejects="server exited"
	fi
	log "ladder: $name idle ${IDLE}s"
	sleep "$IDLE"
	idle=$(kib "$SPID" VmRSS)
	stop "$SPID"
	summarise "$dir"
	placed=$(placed_secs "$dir")
	achieved=$(awk -v n="$CREATED" -v s="$placed" 'BEGIN {printf "%.0f", (s > 0 ? n / s : 0)}')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rate" "$CREATED" "$OK" "$FAILED" \
		"$REFUSED" "$NEVER" "$achieved" "$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}')" \
		"$base" "$peak" "$idle" "$rejects" >>"$TSV"
	if [ "$rejects" != "server exited" ] && awk -v f="$FAILED" -v c="$CREATED" -v lim="$FAIL_PCT" -v r="$rate" 'BEGIN {exit !(c >= r && f * 100 <= lim * c)}'; then
		HELD[$name]=$rate
	else
		STOPPED[$name]=$rate
		log "ladder: $name failed $FAILED of $CREATED calls at $rate/s: its ladder stops here"
	fi
}

# print_rate RATE: the markdown table of one rate, ratios against the SIPp
# UAS and diago of the same rate.
print_rate() {
	awk -F'\t' -v rate="$1" -v callms="$CALL_MS" '
	NR > 1 && $2 == rate {
		n++; name[n] = $1; row[$1] = $0
		ok[$1] = $4; cpu[$1] = $9; peak[$1] = $11
		cpc[$1] = $4 > 0 ? $9 * 1000 / $4 : 0
	}
	function ratio(a, b) { return (b > 0 && a > 0) ? sprintf("%.2f×", a / b) : "–" }
	END {
		if (!n) exit
		printf "\n### %s calls/s, %d ms calls\n\n", rate, callms
		print "| server | ok / failed | 503 | not ended | achieved/s | CPU s | CPU per call | ×SIPp UAS | ×diago | ×sipgo floor | RSS before | peak RSS | ×SIPp UAS | ×diago | RSS idle after | refused by (switchboard /metrics) |"
		print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
		for (i = 1; i <= n; i++) {
			s = name[i]; split(row[s], f, "\t")
			printf "| %s | %d / %d | %d | %d | %d | %.2f | %.3f ms | %s | %s | %s | %.0f MiB | %.0f MiB | %s | %s | %.0f MiB | %s |\n",
				s, f[4], f[5], f[6], f[7], f[8], f[9], cpc[s], ratio(cpc[s], cpc["sipp"]), ratio(cpc[s], cpc["diago"]), ratio(cpc[s], cpc["sipgo-floor"]),
				f[10] / 1024, f[11] / 1024, ratio(peak[s], peak["sipp"]), ratio(peak[s], peak["diago"]), f[12] / 1024, f[13]
		}
	}' "$TSV"
}

if [ "$DO_LADDER" = 1 ]; then
	for rate in $RATES; do
		for name in $SERVERS; do
			[ -z "${STOPPED[$name]:-}" ] || continue
			run_step "$name" "$rate"
		done
		print_rate "$rate"
	done
	echo
	echo "### Highest rate with at most $FAIL_PCT % of calls failed (${STEP} s steps, rates: $RATES)"
	echo
	echo "| server | highest rate held | first rate that failed | ×SIPp UAS | ×diago |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for name in $SERVERS; do
		h=${HELD[$name]:-0} u=${HELD[sipp]:-0} d=${HELD[diago]:-0}
		awk -v s="$name" -v h="$h" -v u="$u" -v d="$d" -v f="${STOPPED[$name]:-none}" 'function r(a, b) {return b > 0 ? sprintf("%.2f×", a / b) : "–"}
			BEGIN {printf "| %s | %s | %s | %s | %s |\n", s, (h > 0 ? h "/s" : "none"), f, r(h, u), r(h, d)}'
	done
fi

# ---------------------------------------------------------- 2: overload
# overload NAME RATE: the burst, then the low rate right after it.
overload() {
	local name=$1 rate=$2 dir=$OUT/overload/$1 c0 c1 bp first after_ok after_failed after_refused bok bfailed bref bans bcreated bnever
	mkdir -p "$dir"
	start_server "$name" "$dir"
	c0=$(cpu_ticks "$SPID")
	log "overload: $name, $rate/s for ${BURST_SECS}s, then $AFTER_RATE/s for ${AFTER_SECS}s"
	uac "$dir/burst" "$rate" "$BURST_SECS" "$UAC_PORT" "$UAC_MP" "$SPORT" &
	bp=$!
	PIDS+=("$bp")
	# The burst's calls are placed after BURST_SECS (or, if SIPp cannot
	# place them that fast, when its counter says so; at most 3× longer).
	sleep "$BURST_SECS"
	local i
	for i in $(seq $((BURST_SECS * 20))); do
		[ -s "$dir/burst/stat.csv" ] || break
		[ "$(sipp_stat "$dir/burst" "OutgoingCall(C)")" -ge $((rate * BURST_SECS)) ] && break
		sleep 0.1
	done
	uac "$dir/after" "$AFTER_RATE" "$AFTER_SECS" "$AFTER_PORT" "$AFTER_MP" "$SPORT" -trace_rtt -rtt_freq 1
	wait "$bp" 2>/dev/null || true
	forget "$bp"
	c1=$(cpu_ticks "$SPID")
	if [ "$name" = switchboard ]; then scrape_metrics "$dir/metrics.txt"; fi
	stop "$SPID"
	summarise "$dir/burst"
	bcreated=$CREATED bok=$OK bfailed=$FAILED bref=$REFUSED bans=$ANSWERED bnever=$NEVER
	summarise "$dir/after"
	after_ok=$OK after_failed=$FAILED after_refused=$REFUSED
	# First success after the burst: the first call of the low rate whose
	# 200 came (SIPp's rtt file: date in ms; response time in ms).
	# Its Date_ms counts from SIPp's start, which was the burst's end.
	first=$({ cat "$dir"/after/*_rtt.csv 2>/dev/null || :; } |
		awk -F';' '$1 ~ /^[0-9.]+$/ {d = $1 / 1000; if (!s || d < m) m = d; s = 1} END {if (s) printf "%.2f s", m; else print "none"}')
	printf '| %s | %d/s × %d s | %d | %d | %d | %d | %d (%s) | %d | %.2f | %d/s × %d s: %d ok, %d failed (%d × 503) | %s |\n' \
		"$name" "$rate" "$BURST_SECS" "$bcreated" "$bref" "$bans" "$bok" "$((bfailed - bref))" \
		"$([ "$bnever" -gt 0 ] && echo "$bnever not ended" || echo "0 not ended")" "$((bans - bok))" \
		"$(awk -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN {print t / hz}')" \
		"$AFTER_RATE" "$AFTER_SECS" "$after_ok" "$after_failed" "$after_refused" "$first" >>"$OUT/overload.md"
}

if [ "$DO_OVERLOAD" = 1 ]; then
	br=$BURST_RATE
	if [ "$br" = 0 ] && [ -n "${HELD[switchboard]:-}" ]; then br=$((HELD[switchboard] * 2)); fi
	if [ "$br" = 0 ]; then
		echo
		echo "(overload skipped: no rate held by switchboard in this run and no --burst-rate)"
	else
		{
			echo
			echo "### Overload: ${br} calls/s for ${BURST_SECS} s, then ${AFTER_RATE} calls/s right after"
			echo
			echo "| server | burst | placed | 503 | answered (200) | completed | other failures | accepted, not completed | server CPU s | right after the burst | first success after the burst |"
			echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
		} >"$OUT/overload.md"
		for name in switchboard diago; do
			case " $SERVERS " in *" $name "*) overload "$name" "$br" ;; esac
		done
		cat "$OUT/overload.md"
	fi
fi

# --------------------------------------------------------------- 3: RTP
if [ "$DO_RTP" = 1 ]; then
	echo
	echo "### RTP: BenchmarkEchoVsFloor (streams $ECHO_STREAMS, window $ECHO_WINDOW)"
	echo
	log "rtp: BenchmarkEchoVsFloor"
	(cd "$REPO" && go test -c -o "$OUT/bin/media.test" ./media/)
	(cd "$REPO/media" && timeout 600 "$OUT/bin/media.test" -test.run XXX -test.bench EchoVsFloor -test.benchtime 1x -test.cpu 1 \
		-echo.streams="$ECHO_STREAMS" -bridge.window="$ECHO_WINDOW") >"$OUT/echo_vs_floor.txt" 2>&1 || true
	echo '```'
	grep -E 'engine [0-9]+ ns/pkt|no ratio|^Benchmark|FAIL' "$OUT/echo_vs_floor.txt" | sed 's/^ *//' || echo "(no result; see $OUT/echo_vs_floor.txt)"
	echo '```'

	echo
	echo "### RTP: SIPp g711a.pcap echoed, $PCAP_CALLS calls at $PCAP_RATE/s"
	echo
	echo "| round | server | calls ok / failed | server CPU s | packets per call (SIPp) | per echoed packet | ×diago | peak RSS | packets out (switchboard /metrics) |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for round in $(seq "$PCAP_ROUNDS"); do
		dg_us=0
		for name in diago switchboard; do
			case " $SERVERS " in *" $name "*) ;; *) continue ;; esac
			dir=$OUT/pcap/$round/$name
			mkdir -p "$dir"
			start_server "$name" "$dir"
			c0=$(cpu_ticks "$SPID")
			log "rtp: pcap echo, $name, round $round"
			wait_free "$PCAP_PORT" || exit 1
			wait_free_media "$PCAP_MP" || exit 1
			# SIPp reads g711a.pcap relative to its working directory.
			(cd /usr/share/sip-tester && timeout -s INT $((PCAP_CALLS / PCAP_RATE + 120)) sipp -sf "$PCAP_SCEN" -s reflect \
				-r "$PCAP_RATE" -m "$PCAP_CALLS" -l "$PCAP_CALLS" -i 127.0.0.1 -p "$PCAP_PORT" -mp "$PCAP_MP" \
				-nostdin -timeout $((PCAP_CALLS / PCAP_RATE + 60))s -trace_stat -stf "$dir/stat.csv" -fd 1 \
				"127.0.0.1:$SPORT") >"$dir/sipp.out" 2>&1 || true
			c1=$(cpu_ticks "$SPID")
			peak=$(kib "$SPID" VmHWM)
			pkts=-
			if [ "$name" = switchboard ]; then
				sleep 1 # the last calls' counters are added when they end
				scrape_metrics "$dir/metrics.txt"
				pkts=$(awk '/^switchboard_rtp_packets_total\{direction="out"\}/ {printf "%d", $2}' "$dir/metrics.txt")
			fi
			stop "$SPID"
			ok=$(sipp_stat "$dir" "SuccessfulCall(C)")
			failed=$(($(sipp_stat "$dir" "OutgoingCall(C)") - ok))
			# Packets per call: what SIPp says it plays ("npkts").
			npkts=$(awk '/npkts/ {print $NF + 0; exit}' "$dir/sipp.out")
			npkts=${npkts:-0}
			us=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$ok" -v k="$npkts" 'BEGIN {printf "%.1f", (n * k > 0 ? t / hz / (n * k) * 1e6 : 0)}')
			if [ "$name" = diago ]; then dg_us=$us; fi
			awk -v r="$round" -v s="$name" -v ok="$ok" -v f="$failed" -v t=$((c1 - c0)) -v hz="$HZ" -v us="$us" -v d="$dg_us" -v pk="$peak" -v p="$pkts" -v k="$npkts" \
				'BEGIN {printf "| %d | %s | %d / %d | %.2f | %d | %s µs | %s | %.1f MiB | %s |\n", r, s, ok, f, t / hz, k, us, (d > 0 ? sprintf("%.2f×", us / d) : "–"), pk / 1024, p}'
		done
	done
fi
log "done; raw results in $OUT"
