#!/usr/bin/env bash
# RFC 2136 UPDATE benchmarks of issue 14, everything on loopback, release build:
#   1. signed UPDATEs per second (TSIG hmac-sha256, over UDP, CONC clients), into one zone
#      and spread over 1,000 zones; next to it the HTTP API's figure for the same changes
#      (PATCH /v1/zones/<zone>/records), same concurrency.
#   2. NOERROR -> answer served: after each UPDATE's NOERROR, the time until a UDP query
#      answers the new record (median, p99), and the UPDATE round trip itself.
# Each change adds one TXT record; every one is written durably (fsync) before its response,
# so the writer's disk work dominates.
#
# usage: bench/update.sh [CHANGES] [CONC]   (defaults: 2000 changes per run, 8 clients)
# Needs /usr/bin/python3 with dnspython (Debian: python3-dnspython). Builds with xcargo
# (cargo when xcargo is absent) and runs the measurements under the machine-wide cargo lock,
# from a private copy of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
changes=${1:-2000}
conc=${2:-8}
py=/usr/bin/python3

. bench/lib.sh
if [ -z "${MAILZONE_BENCH_LOCKED:-}" ]; then
  "$py" -c "import dns.update, dns.tsigkeyring" 2>/dev/null || { echo "missing dnspython (apt-get install python3-dnspython)"; exit 1; }
fi
bench_relock "$0" "$@"
bench_workdir

free_port() { "$py" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
dns_port=$(free_port)
http_port=$(free_port)
token=bench-token-0123456789abcdef

mkdir -p "$work/zones"
small_zone() { printf '$ORIGIN %s.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.53\n' "$1"; }
small_zone bench.test > "$work/zones/bench.test.zone"
for i in $(seq 0 999); do small_zone "z$i.test" > "$work/zones/z$i.test.zone"; done

cat > "$work/mailzone.yaml" <<YAML
zones_dir: $work/zones
keys_dir: $work/keys
dns:
  listen: ["127.0.0.1:$dns_port"]
http:
  listen: "127.0.0.1:$http_port"
  token: $token
log:
  level: warn
transfer:
  keys:
    - name: bench-key
      update: {zones: all}
YAML
"$bin" serve --config "$work/mailzone.yaml" 2>>"$work/mailzone.log" &
pids+=($!)
for _ in $(seq 1 400); do
  [ -s "$work/keys/tsig/bench-key.key" ] && dig +short @127.0.0.1 -p "$dns_port" z999.test SOA 2>/dev/null | grep -q . && break
  sleep 0.05
done
secret=$(cat "$work/keys/tsig/bench-key.key")

echo "mailzone: $("$bin" --version 2>/dev/null || echo "$bin"), $(nproc) cores, $changes changes per run, $conc clients"

"$py" - "$dns_port" "$http_port" "$token" "$secret" "$changes" "$conc" <<'PY'
import http.client, json, statistics, sys, threading, time
import dns.message, dns.query, dns.rcode, dns.tsigkeyring, dns.update, dns.rdatatype

dns_port, http_port, token, secret, n, conc = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
keyring = dns.tsigkeyring.from_text({"bench-key.": secret})
run_id = [0]

def update(zone, name, value):
    u = dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm="hmac-sha256")
    u.add(name, 300, "TXT", '"%s"' % value)
    r = dns.query.udp(u, "127.0.0.1", port=dns_port, timeout=10)
    return r.rcode()

def patch(conn, zone, name, value):
    body = json.dumps({"operations": [{"op": "add", "name": name, "type": "TXT", "records": [value]}]})
    conn.request("PATCH", "/v1/zones/%s/records" % zone, body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    return r.status

def rate(label, zones, via):
    run_id[0] += 1
    rid = run_id[0]
    errors = []
    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30) if via == "http" else None
        for i in range(c, n, conc):
            zone = zones[i % len(zones)]
            name = "r%d-%d" % (rid, i)
            if via == "dns":
                rc = update(zone, name + "." + zone, "v%d" % i)
                if rc != dns.rcode.NOERROR:
                    errors.append(dns.rcode.to_text(rc))
            else:
                st = patch(conn, zone, name, "v%d" % i)
                if not 200 <= st < 300:
                    errors.append(st)
    threads = [threading.Thread(target=client, args=(c,)) for c in range(conc)]
    t0 = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    secs = time.monotonic() - t0
    print("  %-44s %7.0f changes/s  (%d in %.2f s%s)" % (label, n / secs, n, secs, ", %d errors: %s" % (len(errors), errors[:3]) if errors else ""))

one = ["bench.test."]
many = ["z%d.test." % i for i in range(1000)]
print("== 1. changes per second (%d clients)" % conc)
rate("RFC 2136 UPDATE, signed, one zone", one, "dns")
rate("HTTP API PATCH, one zone", [z.rstrip(".") for z in one], "http")
rate("RFC 2136 UPDATE, signed, 1,000 zones", many, "dns")
rate("HTTP API PATCH, 1,000 zones", [z.rstrip(".") for z in many], "http")

print("== 2. NOERROR -> answer served (sequential, %d changes)" % min(n, 1000))
served, roundtrip, polls = [], [], 0
for i in range(min(n, 1000)):
    zone = many[i % len(many)]
    name = "lat%d.%s" % (i, zone)
    t0 = time.monotonic()
    rc = update(zone, name, "l%d" % i)
    t1 = time.monotonic()
    assert rc == dns.rcode.NOERROR, dns.rcode.to_text(rc)
    q = dns.message.make_query(name, "TXT")
    while True:
        polls += 1
        r = dns.query.udp(q, "127.0.0.1", port=dns_port, timeout=2)
        if r.answer:
            break
        if time.monotonic() - t1 > 10:
            sys.exit("change %d never served" % i)
    t2 = time.monotonic()
    roundtrip.append((t1 - t0) * 1000)
    served.append((t2 - t1) * 1000)
def p99(v):
    v = sorted(v); return v[min(len(v) - 1, int(round(0.99 * len(v))) - 1)]
print("  UPDATE round trip (signed, to NOERROR):      median %.2f ms, p99 %.2f ms" % (statistics.median(roundtrip), p99(roundtrip)))
print("  NOERROR -> first positive answer over UDP:   median %.3f ms, p99 %.3f ms (%d queries for %d changes: %s)" % (
    statistics.median(served), p99(served), polls, len(served),
    "each served by the first query" if polls == len(served) else "some needed a retry"))
PY
