#!/usr/bin/env bash
# Baseline DNS benchmark: release build, 1 and 10,000 mail-style zones, dnsperf for a fixed
# time with a realistic mix (MX/TXT/SRV/A, ~10% NXDOMAIN, ~5% out-of-zone). Prints queries
# per second, latency, start-up time and resident memory. Needs dnsperf (Debian package).
#
# usage: bench/dnsperf.sh [SECONDS]   (default 15 s per run)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
command -v dnsperf >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq dnsperf; }
cargo build --release --locked -q
bin=target/release/mailzone
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
pid=

run() {
  local n=$1
  rm -rf "$work/zones" "$work/keys"; mkdir -p "$work/zones"
  python3 bench/gen_zones.py "$work/zones" "$work/queries" "$n" 200000
  cat > "$work/config.yaml" <<YAML
zones_dir: $work/zones
keys_dir: $work/keys
dns:
  listen: ["127.0.0.1:5399"]
http:
  listen: "127.0.0.1:8099"
log:
  level: warn
YAML
  local t0 t1
  t0=$(date +%s.%N)
  $bin serve --config "$work/config.yaml" 2>"$work/log" &
  pid=$!
  until python3 - <<'PY' 2>/dev/null
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.05)
q = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x00\x00\x06\x00\x01"
s.sendto(q, ("127.0.0.1", 5399)); s.recv(512)
PY
  do sleep 0.01; done
  t1=$(date +%s.%N)
  local rss_start
  rss_start=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  dnsperf -s 127.0.0.1 -p 5399 -d "$work/queries" -l "$secs" -c 8 -T 2 -q 500 > "$work/perf" 2>&1 || true
  local rss_end
  rss_end=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  echo "== $n zone(s) =="
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "start-up (exec to first answer): %.3f s\n", b - a }'
  echo "resident memory: ${rss_start} KiB after load, ${rss_end} KiB after the run"
  grep -E "Queries sent|Queries completed|Queries lost|Response codes|Queries per second|Average Latency|Latency StdDev" "$work/perf" | sed 's/^ *//'
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

run 1
run 10000
