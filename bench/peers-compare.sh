#!/usr/bin/env bash
# peers-compare.sh - mailzone side by side with NSD and Knot (and the do-nothing echo
# responder, the client's ceiling), same generated mail-style zones, same dnsperf query mix,
# one after the other with interleaved rounds, pinned (server core 0, dnsperf core 1) and
# free; prints issue 13's table (q/s, answers per server CPU-second, latency percentiles at a
# fixed load, TCP, load time and KiB per zone). Loopback only (127.0.0.1, high ports).
#
# The measuring is bench/peers/peers.sh (a copy of the project's reference measurement,
# ../shared/bench/peers.sh, with its helpers); this script builds or takes the release binary,
# copies it aside (the shared target dir's binary may be overwritten by another build), and
# runs peers.sh with mailzone added. Every argument is passed on to peers.sh, e.g.
#   bench/peers-compare.sh                       # the full run, ~15 min (+ -N 100000: ~2 min)
#   bench/peers-compare.sh -l 5 -r 1 -n 10000 --no-tcp --lat-qps 0 --setups pinned   # ~1 min
# MAILZONE_BIN=/path/to/mailzone skips the build. Needs: nsd knot dnsperf (Debian packages).
# On a shared machine, run it as `flock /tmp/mailzone-cargo.lock bench/peers-compare.sh ...`
# (with MAILZONE_BIN set: the build would wait for the same lock).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
for tool in nsd knotd dnsperf taskset; do
  command -v "$tool" >/dev/null || { echo "peers-compare: $tool is missing (apt-get install nsd knot dnsperf)" >&2; exit 1; }
done
if [ -z "${MAILZONE_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  MAILZONE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/mailzone"
fi
BIN_COPY=$(mktemp -d)/mailzone
cp "$MAILZONE_BIN" "$BIN_COPY"
trap 'rm -rf "$(dirname "$BIN_COPY")"' EXIT
export MAILZONE_BIN=$BIN_COPY
"$HERE/peers/peers.sh" nsd knot echo --add mailzone 5305 "$HERE/peers/mailzone-peer.sh" "$@"
