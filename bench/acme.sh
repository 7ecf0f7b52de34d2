#!/usr/bin/env bash
# ACME benchmark of issue 15: certificates for N domains (3 web names each: mta-sts,
# autoconfig, autodiscover) end to end against a local pebble, release build, all on
# loopback. Two modes:
#   dns01  (default) N hosted domains; pebble validates every DNS-01 challenge by asking
#          mailzone.
#   http01 N external domains (acme.http01); their zones are served by a second mailzone,
#          "the world's DNS", pointing the web names at 127.0.0.1; pebble resolves them
#          there and fetches every HTTP-01 token from mailzone's plain-HTTP web listener
#          (pebble's httpPort is that listener's port).
# PEBBLE_VA_NOSLEEP=1 removes pebble's random waits only; PEBBLE_VA_ALWAYS_VALID is never
# set, and PEBBLE_AUTHZREUSE=0 makes every order prove control.
# Measured: from the first association to the last certificate installed (all N in
# /v1/status with a serial), with mailzone's default acme.concurrency (4 orders at once).
#
# usage: bench/acme.sh [DOMAINS] [dns01|http01]   (default 100 dns01)
# Needs pebble, openssl, curl, python3. Builds with xcargo (cargo when absent) and runs
# under the machine-wide cargo lock from a private copy of the binary; every wait has a
# deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
mode=${2:-dns01}
case "$mode" in dns01|http01) ;; *) echo "mode: dns01 or http01, not $mode"; exit 1 ;; esac

. bench/lib.sh
if [ -z "${MAILZONE_BENCH_LOCKED:-}" ]; then
  for tool in pebble openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install pebble openssl curl python3)"; exit 1; }
  done
fi
bench_relock "$0" "$@"
bench_workdir

free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }
dns_port=$(free_port 127.0.0.1)
http_port=$(free_port 127.0.0.1)
tls_port=$(free_port 127.0.0.1)
acme_port=$(free_port 127.0.0.1)
mgmt_port=$(free_port 127.0.0.1)
web_http_port=$(free_port 127.0.0.1)
world_dns_port=$(free_port 127.0.0.1)
world_http_port=$(free_port 127.0.0.1)
token=bench-token-0123456789abcdef
# Where pebble resolves the names: mailzone itself (dns01) or the world's DNS (http01).
if [ "$mode" = http01 ]; then pebble_dns=$world_dns_port; else pebble_dns=$dns_port; fi

# pebble's HTTPS certificate: a CA and a leaf for 127.0.0.1 (rustls refuses a CA as leaf).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/pebble.key" -out "$work/pebble.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n' > "$work/ext"
openssl x509 -req -in "$work/pebble.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -set_serial 1 \
  -days 1 -extfile "$work/ext" -out "$work/pebble.pem" 2>/dev/null
cat > "$work/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$acme_port", "managementListenAddress": "127.0.0.1:$mgmt_port",
  "certificate": "$work/pebble.pem", "privateKey": "$work/pebble.key",
  "httpPort": $web_http_port, "tlsPort": $(free_port 127.0.0.1),
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
env -u PEBBLE_VA_ALWAYS_VALID PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
  pebble -config "$work/pebble.json" -dnsserver "127.0.0.1:$pebble_dns" >"$work/pebble.log" 2>&1 &
pids+=($!)

mkdir -p "$work/zones" "$work/keys"
chmod 700 "$work/keys"
printf '$ORIGIN mail.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nweb A 127.0.0.1\n' > "$work/zones/mail.test.zone"
if [ "$mode" = dns01 ]; then
  for i in $(seq -w 1 "$n"); do
    printf '$ORIGIN d%s.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n' "$i" > "$work/zones/d$i.test.zone"
  done
else
  # The world's DNS: the external domains' zones, web names at the listener's address.
  mkdir -p "$work/world/zones" "$work/world/keys"
  chmod 700 "$work/world/keys"
  for i in $(seq -w 1 "$n"); do
    printf '$ORIGIN d%s.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nmta-sts A 127.0.0.1\nautoconfig A 127.0.0.1\nautodiscover A 127.0.0.1\n' "$i" > "$work/world/zones/d$i.test.zone"
  done
  cat > "$work/world.yaml" <<YAML
zones_dir: $work/world/zones
keys_dir: $work/world/keys
dns: {listen: ["127.0.0.1:$world_dns_port"]}
http: {listen: "127.0.0.1:$world_http_port", token: $token}
log: {level: warn}
diagnosis: {resolver: "127.0.0.1:9", interval_secs: 86400}
YAML
  "$bin" serve --config "$work/world.yaml" 2>>"$work/world.log" &
  pids+=($!)
fi
# External domains are looked up (their served SPF, at association) where the world sees
# them: the world's DNS, not a dead address that would time each association out.
if [ "$mode" = http01 ]; then
  web_http="\"127.0.0.1:$web_http_port\""
  http01=true
  resolver=127.0.0.1:$world_dns_port
else
  web_http=null
  http01=false
  resolver=127.0.0.1:9
fi
cat > "$work/mailzone.yaml" <<YAML
zones_dir: $work/zones
keys_dir: $work/keys
dns: {listen: ["127.0.0.1:$dns_port"]}
http: {listen: "127.0.0.1:$http_port", token: $token}
log: {level: warn}
diagnosis: {resolver: "$resolver", interval_secs: 86400}
web:
  enabled: true
  http_listen: $web_http
  https_listen: "127.0.0.1:$tls_port"
acme:
  enabled: true
  directory_url: "https://127.0.0.1:$acme_port/dir"
  contact: hostmaster@mail.test
  ca_file: $work/ca.pem
  http01: $http01
platforms:
  - id: web1
    mx: [{host: mx1.mail.test., priority: 10}]
    endpoints:
      - {service: imap, host: imap.mail.test., port: 993, security: implicit-tls}
      - {service: submission, host: smtp.mail.test., port: 465, security: implicit-tls}
    autodiscover_host: web.mail.test.
    autoconfig_host: web.mail.test.
    ownership_target: check.mail.test.
    spf: ["include:spf.mail.test"]
    dmarc: {policy: none}
    mta_sts: {mode: enforce, max_age_secs: 86400, web_host: web.mail.test.}
YAML

"$bin" serve --config "$work/mailzone.yaml" 2>>"$work/mailzone.log" &
pids+=($!)
up=""
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 \
    && curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$acme_port/dir" >/dev/null 2>&1 \
    && { [ "$mode" = dns01 ] || curl -sf "http://127.0.0.1:$world_http_port/healthz" >/dev/null 2>&1; }; then
    up=1; break
  fi
  sleep 0.1
done
[ -n "$up" ] || { echo "mailzone or pebble did not start"; tail -5 "$work/mailzone.log" "$work/pebble.log" "$work"/world.log 2>/dev/null; exit 1; }

start=$(date +%s.%N)
for i in $(seq -w 1 "$n"); do
  curl -sf -H "Authorization: Bearer $token" -XPOST "http://127.0.0.1:$http_port/v1/domains" \
    -d "{\"domain\": \"d$i.test\", \"platform\": \"web1\", \"mode\": \"authoritative\", \"records\": {\"mta-sts\": true}}" >/dev/null
done
associated=$(date +%s.%N)

# Until every domain has its certificate (or one failed), at most 600 s.
deadline=$(( $(date +%s) + 600 ))
while :; do
  read -r issued failed < <(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/v1/status" | python3 -c '
import json, sys
mode = sys.argv[1].replace("0", "-0")
c = json.load(sys.stdin)["certificates"]
print(sum(1 for x in c if x["serial"] and x["challenge"] == mode), sum(1 for x in c if x["failures"]))' "$mode")
  [ "$issued" -ge "$n" ] && break
  if [ "$failed" -gt 0 ] || [ "$(date +%s)" -ge "$deadline" ]; then
    echo "stopped: $issued issued, $failed failed"
    curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/v1/status" | python3 -c '
import json, sys
for x in json.load(sys.stdin)["certificates"]:
    if x["last_error"]: print(x["domain"], x["last_error"]); break'
    exit 1
  fi
  sleep 0.05
done
end=$(date +%s.%N)

# Proof, after the clock stopped: pebble's root verifies what the listener serves, and
# no challenge record is left in any zone file.
curl -sf --cacert "$work/ca.pem" "https://127.0.0.1:$mgmt_port/roots/0" > "$work/root.pem"
last=$(printf 'd%s.test' "$(seq -w 1 "$n" | tail -1)")
curl -sf --cacert "$work/root.pem" --resolve "mta-sts.$last:$tls_port:127.0.0.1" \
  "https://mta-sts.$last:$tls_port/.well-known/mta-sts.txt" | grep -q "mode: enforce"
if grep -l _acme-challenge "$work"/zones/*.zone >/dev/null 2>&1; then
  echo "challenge records left in zone files"; exit 1
fi
if [ "$mode" = http01 ]; then
  # No token is answered once the orders ended (any token: the store is empty).
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: mta-sts.$last" \
    "http://127.0.0.1:$web_http_port/.well-known/acme-challenge/anything")
  [ "$code" = 404 ] || { echo "challenge path answered $code"; exit 1; }
fi
orders=$(curl -sf "http://127.0.0.1:$http_port/metrics" -H "Authorization: Bearer $token" \
  | awk '/^mailzone_acme_orders_total\{result="ok"\}/ {print $2}')

python3 - "$start" "$associated" "$end" "$n" "$mode" <<'PY'
import sys
start, associated, end, n = map(float, sys.argv[1:5])
total = end - start
how = {"dns01": "hosted, DNS-01 validated by asking mailzone",
       "http01": "external, HTTP-01 fetched from mailzone's plain-HTTP listener"}[sys.argv[5]]
print(f"== ACME issuance, {int(n)} domains x 3 names, against pebble ({how})")
print(f"associations made in      {associated - start:8.2f} s")
print(f"all certificates served   {total:8.2f} s   ({total / n * 1000:.0f} ms per domain, {n / total:.2f} domains/s)")
PY
echo "orders completed (mailzone_acme_orders_total{result=\"ok\"}): ${orders:-?}"
