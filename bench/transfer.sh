#!/usr/bin/env bash
# Transfer benchmarks of issue 11, mailzone as the hidden primary of a real Knot secondary,
# everything on loopback (127.0.0.1 mailzone, 127.0.0.3 knotd and every transfer client:
# mailzone allows transfers from the secondaries it lists, by address), release build:
#   1. 2xx -> change served by a Knot secondary (NOTIFY + IXFR): median and p99 over CHANGES.
#   2. 10,000 zones with a catalog: time until a fresh Knot catalog consumer serves them all.
#   3. AXFR throughput (records/s) of one 100,000-record zone (kdig, 3 runs).
#   4. DNS answers/s on the primary (dnsperf) idle, then while AXFRs of that zone run.
#   +  the catalog's cost in the writer: API zone creation with 10,000 zones, with and
#      without transfer.catalog (median of 50).
# 1-3 and the "while transferring" half of 4 need AXFR/IXFR and NOTIFY out (the xfr and
# notify work): on a build without them they are reported as not available, not faked.
#
# usage: bench/transfer.sh [CHANGES] [SECONDS]   (defaults: 200 changes, 10 s per dnsperf run)
# Needs knotd/knotc/kdig (Debian: knot, knot-dnsutils), dnsperf, python3. Builds with xcargo
# (cargo when xcargo is absent) and runs the measurements under the machine-wide cargo lock,
# from a private copy of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-200}
secs=${2:-10}

. bench/lib.sh
if [ -z "${MAILZONE_BENCH_LOCKED:-}" ]; then
  for tool in knotd knotc kdig dnsperf python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install knot knot-dnsutils dnsperf)"; exit 1; }
  done
fi
bench_relock "$0" "$@"
bench_workdir

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }
dns_port=$(free_port 127.0.0.1)
http_port=$(free_port 127.0.0.1)
knot_port=$(free_port 127.0.0.3)
token=bench-token-0123456789abcdef
now() { date +%s.%N; }

# One UDP query; exit 0 when the answer is NOERROR with at least one answer record.
cat > "$work/ask.py" <<'PY'
import socket, struct, sys, time
def ask(host, port, name, qtype, timeout=0.2):
    q = struct.pack(">HHHHHH", 0x4242, 0, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\x00" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (host, port))
        r = s.recv(65535)
    except OSError:
        return False
    finally:
        s.close()
    flags, an = struct.unpack(">H", r[2:4])[0], struct.unpack(">H", r[6:8])[0]
    return (flags & 0xF) == 0 and an > 0
if __name__ == "__main__":
    host, port, name, qtype = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    sys.exit(0 if ask(host, port, name, qtype) else 1)
PY
ask() { python3 "$work/ask.py" "$@"; }
wait_until() { # SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$end" ]; then echo "timed out waiting for $what"; return 1; fi
    sleep 0.05
  done
}

start_mailzone() { # ZONES_DIR CATALOG(yes|no) NAME_TO_WAIT_FOR
  local catalog_line=""
  [ "$2" = yes ] && catalog_line="  catalog: catalog.invalid."
  cat > "$work/mailzone.yaml" <<YAML
zones_dir: $1
keys_dir: $work/keys
dns:
  listen: ["127.0.0.1:$dns_port"]
http:
  listen: "127.0.0.1:$http_port"
  token: $token
log:
  level: warn
transfer:
  secondaries: [{address: "127.0.0.3:$knot_port", zones: all}]
$catalog_line
YAML
  "$bin" serve --config "$work/mailzone.yaml" 2>>"$work/mailzone.log" &
  mz_pid=$!
  pids+=("$mz_pid")
  wait_until 600 "mailzone to answer for $3" ask 127.0.0.1 "$dns_port" "$3" 6
}
stop_mailzone() { kill "$mz_pid" 2>/dev/null || true; wait "$mz_pid" 2>/dev/null || true; }

# knotd on 127.0.0.3 with BODY (zones, templates); its folder is $work/knot.
start_knot() {
  rm -rf "$work/knot"; mkdir -p "$work/knot/db" "$work/knot/zones"
  cat > "$work/knot/knot.conf" <<CONF
server:
    rundir: "$work/knot"
    listen: 127.0.0.3@$knot_port
database:
    storage: "$work/knot/db"
control:
    listen: "$work/knot/knot.sock"
log:
  - target: stderr
    any: info
remote:
  - id: primary
    address: 127.0.0.1@$dns_port
    # From the address mailzone lists as its secondary (its transfer ACL is by address).
    via: 127.0.0.3
acl:
  - id: notify
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: "$work/knot/zones"
    master: primary
    acl: notify
    zonefile-sync: -1
$1
CONF
  knotd -c "$work/knot/knot.conf" 2>"$work/knot/log" &
  knot_pid=$!
  pids+=("$knot_pid")
  wait_until 20 "knotd" knotc -s "$work/knot/knot.sock" status
}
stop_knot() { kill "$knot_pid" 2>/dev/null || true; wait "$knot_pid" 2>/dev/null || true; }

small_zone() { # NAME
  printf '$ORIGIN %s.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n' "$1"
}

echo "mailzone: $("$bin" --version 2>/dev/null || echo "$bin"), $(nproc) cores, knotd $(knotd --version | awk '{print $NF}')"

# ---------------------------------------------------------------- the zones
mkdir -p "$work/zones" "$work/zones10k"
small_zone bench.test > "$work/zones/bench.test.zone"
python3 - "$work/zones/big.test.zone" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("$ORIGIN big.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n")
    for i in range(100_000 - 3):
        f.write("r%d A 10.%d.%d.%d\n" % (i, (i >> 16) & 255, (i >> 8) & 255, i & 255))
PY
python3 bench/gen_zones.py "$work/zones10k" "$work/queries" 10000 200000

# ---------------------------------------------------------------- transfers available?
start_mailzone "$work/zones" yes bench.test.
axfr_records=$(kdig -b 127.0.0.3 @127.0.0.1 -p "$dns_port" +tcp +noall +answer AXFR bench.test. 2>/dev/null | grep -c . || true)
if [ "${axfr_records:-0}" -ge 3 ]; then have_xfr=yes; else have_xfr=no; fi
echo "AXFR out in this build: $have_xfr"
na() { echo "  NOT AVAILABLE: this build answers no AXFR (the xfr/notify work is not merged)"; }

# ---------------------------------------------------------------- 1. change -> secondary
echo "== 1. API 2xx -> change served by a Knot secondary ($changes changes)"
if [ "$have_xfr" = yes ]; then
  start_knot "zone:
  - domain: bench.test."
  wait_until 20 "knot to serve bench.test." ask 127.0.0.3 "$knot_port" bench.test. 6
  python3 - "$http_port" "$knot_port" "$token" "$changes" "$work/ask.py" <<'PY'
import http.client, importlib.util, json, statistics, sys, time
http_port, knot_port, token, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spec = importlib.util.spec_from_file_location("ask", sys.argv[5]); ask = importlib.util.module_from_spec(spec); spec.loader.exec_module(ask)
def measure(first, count, gap):
  lat = []
  for i in range(first, first + count):
    time.sleep(gap)
    body = json.dumps({"operations": [{"op": "add", "name": "t%d" % i, "type": "TXT", "records": ["change %d" % i]}]})
    c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)
    c.request("PATCH", "/v1/zones/bench.test/records", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read(); c.close()
    assert 200 <= r.status < 300, r.status
    t0 = time.monotonic()
    while not ask.ask("127.0.0.3", knot_port, "t%d.bench.test." % i, 16, 0.05):
        if time.monotonic() - t0 > 30:
            sys.exit("change %d never reached the secondary" % i)
        time.sleep(0.0005)
    lat.append((time.monotonic() - t0) * 1000)
  lat.sort()
  p99 = lat[min(len(lat) - 1, int(round(0.99 * len(lat))) - 1)]
  return "median %.1f ms, p99 %.1f ms, max %.1f ms" % (statistics.median(lat), p99, lat[-1])
# Back to back: each change made the moment the previous one is served, so each NOTIFY
# waits out notify_interval_ms (250 ms) after the previous one: the coalescing's price.
print("  back to back (%d changes): %s" % (n, measure(0, n, 0)))
# One change at a time, 1 s apart, as an operator or an association makes them.
print("  1 s apart (%d changes):    %s" % (n // 2, measure(n, n // 2, 1.0)))
PY
  echo "  incremental transfers in the secondary log: $(grep -c "IXFR, incoming.*finished" "$work/knot/log" || true)"
  stop_knot
else na; fi
stop_mailzone

# ---------------------------------------------------------------- catalog cost in the writer
echo "== the catalog in the writer: API zone creation with 10,000 zones (median of 50)"
create_median() { # LABEL
  python3 - "$http_port" "$token" "$1" <<'PY'
import http.client, json, statistics, sys, time
port, token, label = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lat = []
for i in range(50):
    body = json.dumps({"name": "%s-%d.created.test" % (label, i), "nameservers": ["ns1.provider.example."]})
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/zones", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = c.getresponse(); r.read(); c.close()
    assert r.status == 201, r.status
    lat.append((time.monotonic() - t0) * 1000)
print("  %-16s median %.1f ms, max %.1f ms" % (label + ":", statistics.median(lat), max(lat)))
PY
}
cp -r "$work/zones10k" "$work/zones10k-plain"
t0=$(now); start_mailzone "$work/zones10k-plain" no mail-domain-00000.test.; t1=$(now)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "  start-up, 10,000 zones, no catalog: %.2f s\n", b - a }'
create_median no-catalog
stop_mailzone
rm -rf "$work/zones10k-plain"
t0=$(now); start_mailzone "$work/zones10k" yes mail-domain-00000.test.; t1=$(now)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "  start-up, 10,000 zones, catalog built at start: %.2f s\n", b - a }'
echo "  catalog file: $(grep -c ' PTR ' "$work/zones10k/catalog.invalid.zone") members, $(du -k "$work/zones10k/catalog.invalid.zone" | cut -f1) KiB"
create_median catalog
# The 50 zones made above are deleted again, so the set is the 10,000 (+ catalog) below.
for i in $(seq 0 49); do
  python3 -c 'import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
c.request("DELETE", "/v1/zones/catalog-%s.created.test" % sys.argv[3], headers={"Authorization": "Bearer " + sys.argv[2]})
c.getresponse().read()' "$http_port" "$token" "$i"
done

# ---------------------------------------------------------------- 2. fresh catalog consumer
echo "== 2. 10,000 zones with a catalog: a fresh Knot consumer serves them all"
if [ "$have_xfr" = yes ]; then
  t0=$(now)
  start_knot "  - id: member
    master: primary
    acl: notify
    storage: \"$work/knot/zones\"
    zonefile-sync: -1
zone:
  - domain: catalog.invalid.
    catalog-role: interpret
    catalog-template: member"
  served() { [ "$(knotc -s "$work/knot/knot.sock" zone-status 2>/dev/null | grep -c 'serial: [0-9]')" -ge 10001 ]; }
  if wait_until 1800 "the consumer to serve 10,000 zones" served; then
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "  all 10,000 member zones served %.1f s after knotd started\n", b - a }'
  fi
  stop_knot
else na; fi
stop_mailzone

# ---------------------------------------------------------------- 3. AXFR throughput
echo "== 3. AXFR of a 100,000-record zone"
mkdir -p "$work/zonesbig"; mv "$work/zones/big.test.zone" "$work/zonesbig/"
start_mailzone "$work/zonesbig" no big.test.
if [ "$have_xfr" = yes ]; then
  for run in 1 2 3; do
    t0=$(now)
    stats=$(kdig -b 127.0.0.3 @127.0.0.1 -p "$dns_port" +tcp +noall +stats AXFR big.test. 2>&1 | grep -i "received" || true)
    t1=$(now)
    records=$(echo "$stats" | sed -n 's/.*(\([0-9]*\) messages, \([0-9]*\) records).*/\2/p')
    awk -v a="$t0" -v b="$t1" -v r="${records:-0}" -v s="$stats" 'BEGIN { printf "  run: %d records in %.2f s = %.0f records/s (%s)\n", r, b - a, r / (b - a), s }'
  done
else na; fi

# ---------------------------------------------------------------- 4. answers while transferring
echo "== 4. DNS answers/s on the primary (dnsperf, ${secs} s), idle vs. while AXFRs run"
stop_mailzone
mv "$work/zonesbig/big.test.zone" "$work/zones10k/"
start_mailzone "$work/zones10k" yes big.test.
perf() {
  dnsperf -s 127.0.0.1 -p "$dns_port" -d "$work/queries" -l "$secs" -c 8 -T 1 -q 500 2>&1 \
    | grep -E "Queries per second|Queries lost|Average Latency" | sed 's/^ */    /'
}
echo "  idle:"; perf
if [ "$have_xfr" = yes ]; then
  (while true; do kdig -b 127.0.0.3 @127.0.0.1 -p "$dns_port" +tcp +noall AXFR big.test. >/dev/null 2>&1; done) &
  loop=$!; pids+=("$loop")
  echo "  while AXFRs of big.test. (100,000 records) run back to back:"; perf
  kill "$loop" 2>/dev/null || true
else na; fi
stop_mailzone
