#!/usr/bin/env bash
# Web listener benchmark of issue 15, everything on loopback, release build:
#   1. autoconfig requests/s over HTTPS with keep-alive (wrk, 1 thread, 16 connections)
#   2. MTA-STS policy requests/s over HTTPS with keep-alive (same)
#   3. autoconfig requests/s over plain HTTP with keep-alive (for comparison)
# ACME issuance for 100 domains against pebble is bench/acme.sh.
# The server is pinned to CPU 0 and wrk to CPU 1 when taskset exists (2-core machines).
#
# usage: bench/web.sh [SECONDS]   (default 10 s per run)
# Needs wrk, openssl, curl, python3. Builds with xcargo (cargo when absent) and runs the
# measurements under the machine-wide cargo lock, from a private copy of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}

. bench/lib.sh
if [ -z "${MAILZONE_BENCH_LOCKED:-}" ]; then
  for tool in wrk openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk openssl curl python3)"; exit 1; }
  done
fi
bench_relock "$0" "$@"
bench_workdir

free_port() { python3 -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"; }
dns_port=$(free_port 127.0.0.1)
http_port=$(free_port 127.0.0.1)
web_port=$(free_port 127.0.0.1)
tls_port=$(free_port 127.0.0.1)
token=bench-token-0123456789abcdef
server_cpu=(); client_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpu=(taskset -c 0); client_cpu=(taskset -c 1)
fi

mkdir -p "$work/zones" "$work/keys/certs"
chmod 700 "$work/keys" "$work/keys/certs"
printf '$ORIGIN shop.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\n' > "$work/zones/shop.test.zone"
printf '$ORIGIN mail.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\nns1 A 127.0.0.1\nweb A 127.0.0.1\n' > "$work/zones/mail.test.zone"
cat > "$work/mailzone.yaml" <<YAML
zones_dir: $work/zones
keys_dir: $work/keys
dns: {listen: ["127.0.0.1:$dns_port"]}
http: {listen: "127.0.0.1:$http_port", token: $token}
log: {level: warn}
diagnosis: {resolver: "127.0.0.1:9", interval_secs: 86400}
web:
  enabled: true
  http_listen: "127.0.0.1:$web_port"
  https_listen: "127.0.0.1:$tls_port"
platforms:
  - id: web1
    mx: [{host: mx1.mail.test., priority: 10}, {host: mx2.mail.test., priority: 20}]
    endpoints:
      - {service: imap, host: imap.mail.test., port: 993, security: implicit-tls}
      - {service: submission, host: smtp.mail.test., port: 465, security: implicit-tls}
      - {service: submission, host: smtp.mail.test., port: 587, security: starttls}
    autodiscover_host: web.mail.test.
    autoconfig_host: web.mail.test.
    spf: ["include:spf.mail.test"]
    dmarc: {policy: none}
    mta_sts: {mode: enforce, max_age_secs: 86400, web_host: web.mail.test.}
YAML

# A test CA and one certificate for the domain's web names (SNI is the IP under wrk, so it
# is also the default certificate).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=mta-sts.shop.test \
  -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:mta-sts.shop.test,DNS:autoconfig.shop.test,DNS:autodiscover.shop.test\n' > "$work/ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -days 2 -extfile "$work/ext" -out "$work/leaf.pem" 2>/dev/null
for stem in default mta-sts.shop.test autoconfig.shop.test; do
  cp "$work/leaf.pem" "$work/keys/certs/$stem.crt"
  install -m 600 "$work/leaf.key" "$work/keys/certs/$stem.key"
done

"${server_cpu[@]}" "$bin" serve --config "$work/mailzone.yaml" 2>>"$work/mailzone.log" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf -H "Authorization: Bearer $token" -XPOST "http://127.0.0.1:$http_port/v1/domains" \
  -d '{"domain": "shop.test", "platform": "web1", "mode": "authoritative", "records": {"mta-sts": true}}' >/dev/null

# Each document must really be served before it is measured.
curl -sf --cacert "$work/ca.pem" --resolve "mta-sts.shop.test:$tls_port:127.0.0.1" \
  "https://mta-sts.shop.test:$tls_port/.well-known/mta-sts.txt" | grep -q "mode: enforce"
curl -sf --cacert "$work/ca.pem" --resolve "autoconfig.shop.test:$tls_port:127.0.0.1" \
  "https://autoconfig.shop.test:$tls_port/mail/config-v1.1.xml" | grep -q "<clientConfig"

run() { # NAME URL HOST
  local out
  out=$("${client_cpu[@]}" wrk -t1 -c16 -d"${secs}s" -H "Host: $3" "$2" 2>&1)
  local rps non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  local p50 p99
  p50=$(awk '$1 == "Latency" {print $2}' <<<"$out")
  printf '%-34s %10s req/s   mean latency %s   non-2xx %s\n' "$1" "$rps" "$p50" "${non2xx:-0}"
}

echo "== web listener, ${secs}s per run, wrk -t1 -c16 (keep-alive)"
run "autoconfig over HTTPS" "https://127.0.0.1:$tls_port/mail/config-v1.1.xml" autoconfig.shop.test
run "MTA-STS policy over HTTPS" "https://127.0.0.1:$tls_port/.well-known/mta-sts.txt" mta-sts.shop.test
run "autoconfig over plain HTTP" "http://127.0.0.1:$web_port/mail/config-v1.1.xml" autoconfig.shop.test
echo "(ACME issuance for 100 domains against pebble: bench/acme.sh)"
