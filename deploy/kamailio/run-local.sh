#!/usr/bin/env bash
# run-local.sh N: a Switchboard cluster of N nodes on this machine, for
# trying it out and for the measurements in docs/scale-out.md. It starts
# etcd (membership), N `switchboard serve --cluster` nodes and Kamailio
# (deploy/kamailio/kamailio.cfg) on loopback, prints where they listen and
# stops them all on Ctrl-C. Logs go to a temporary directory it names.
#
#   SWITCHBOARD=./switchboard deploy/kamailio/run-local.sh 3
#   switchboard load -target sip:reflect@127.0.0.1:5060 -rate 10 -duration 30s
#   curl -s localhost:8081/api/calls
set -euo pipefail
N=${1:-3}
BIN=${SWITCHBOARD:-switchboard}
KPORT=${KAMAILIO_PORT:-5060}
CFG="$(cd "$(dirname "$0")" && pwd)/kamailio.cfg"
DIR=$(mktemp -d -t switchboard-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs in $DIR"
}
trap cleanup EXIT INT TERM

etcd --name local --data-dir "$DIR/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster local=http://127.0.0.1:23800 --log-level warn >"$DIR/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:23790/health >/dev/null && break; sleep 0.2; done

# One secret for the run: the nodes sign the relay calls they place to
# each other with it (see docs/scale-out.md).
head -c 24 /dev/urandom | base64 >"$DIR/cluster.secret"
: >"$DIR/dispatcher.list"
for i in $(seq "$N"); do
  "$BIN" serve --sip-addr "127.0.0.1:$((5070 + i))" --http-addr "127.0.0.1:$((8080 + i))" \
    --tls-addr - --webrtc-addr - --data-dir - --rtp-ports "$((20000 + i * 4000))-$((23999 + i * 4000))" \
    --guest-calls -1 --guest-rate -1 --max-pending-invites -1 \
    --cluster local --cluster-provider etcd --etcd 127.0.0.1:23790 --cluster-secret-file "$DIR/cluster.secret" \
    --cluster-addr "127.0.0.1:$((7080 + i))" --node-name "node$i" >"$DIR/node$i.log" 2>&1 &
  pids+=($!)
  echo "1 sip:127.0.0.1:$((5070 + i)) 0 0" >>"$DIR/dispatcher.list"
  echo "node$i: SIP 127.0.0.1:$((5070 + i))  HTTP http://127.0.0.1:$((8080 + i))/api/calls  pid $!"
done
for i in $(seq "$N"); do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((8080 + i))/readyz" >/dev/null && break; sleep 0.2; done
done

kamailio -f "$CFG" -A "DISPATCHER_LIST=\"$DIR/dispatcher.list\"" -l "udp:127.0.0.1:$KPORT" \
  -DD -E -Y "$DIR" -w "$DIR" -m 128 -n 2 >"$DIR/kamailio.log" 2>&1 &
pids+=($!)
echo "kamailio: SIP 127.0.0.1:$KPORT (dispatcher over $N nodes)  pid $!"
echo "logs: $DIR; Ctrl-C stops everything"
wait
