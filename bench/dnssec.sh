#!/usr/bin/env bash
# DNSSEC benchmark (issue 12): 10,000 mail-style zones (bench/gen_zones.py).
#  1. start-up unsigned (exec to first answer);
#  2. first start with dnssec.enabled: keys generated and every zone signed (zones/s);
#  3. restart with the stored signatures (must stay within 10 % of 1);
#  4. dnsperf with DO=0 then DO=1 on the same signed zones, and the answer sizes.
# Run under the machine-wide lock: flock /tmp/mailzone-cargo.lock bash bench/dnssec.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
n=${ZONES:-10000}
cargo build --release --locked -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/mailzone
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=
elapsed=
mkdir -p "$work/zones"
python3 bench/gen_zones.py "$work/zones" "$work/queries" "$n" 200000
config() {
  cat > "$work/config.yaml" <<YAML
zones_dir: $work/zones
keys_dir: $work/keys
dns:
  listen: ["127.0.0.1:5398"]
http:
  listen: "127.0.0.1:8098"
log:
  level: warn
dnssec:
  enabled: $1
YAML
}
start() {
  local t0 t1
  t0=$(date +%s.%N)
  $bin serve --config "$work/config.yaml" >>"$work/log" 2>&1 &
  pid=$!
  # A daemon that died or never started must end the run, not hold the machine-wide lock.
  local deadline=$(( $(date +%s) + 600 ))
  until python3 - <<'PY' 2>/dev/null
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.05)
q = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01"
s.sendto(q, ("127.0.0.1", 5398)); s.recv(512)
PY
  do
    kill -0 "$pid" 2>/dev/null || { echo "mailzone exited:"; tail -5 "$work/log"; exit 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { echo "mailzone did not answer within 600 s"; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s.%N)
  elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

config false
start; unsigned=$elapsed; stop
echo "start-up, $n unsigned zones: $unsigned s"
config true
start; first=$elapsed
echo "first start, $n zones keyed and signed: $first s"
awk -v a="$first" -v b="$unsigned" -v n="$n" 'BEGIN { printf "signing: %.0f zones/s (time over the unsigned start-up)\n", n / (a - b) }'
stop
start; stored=$elapsed
echo "restart with stored signatures: $stored s"
awk -v a="$stored" -v b="$unsigned" 'BEGIN { printf "  = %.1f %% of the unsigned start-up\n", 100 * a / b }'
z=$(ls "$work/zones" | grep '\.zone$' | head -1 | sed 's/\.zone$//')
for q in "$z MX" "$z TXT" "_dmarc.$z TXT" "nope.$z A"; do
  plain=$(dig @127.0.0.1 -p 5398 +norec $q | awk '/MSG SIZE/ {print $NF}')
  signed=$(dig @127.0.0.1 -p 5398 +norec +dnssec $q | awk '/MSG SIZE/ {print $NF}')
  echo "answer size $q: DO=0 $plain bytes, DO=1 $signed bytes"
done
for d in "" "-D"; do
  dnsperf -s 127.0.0.1 -p 5398 -d "$work/queries" -l "$secs" -c 8 -T 2 -q 500 $d > "$work/perf" 2>&1 || true
  echo "== dnsperf ${d:-(DO=0)} =="
  grep -E "Queries per second|Average Latency|Queries lost" "$work/perf" | sed 's/^ *//'
done
stop
