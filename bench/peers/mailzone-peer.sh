#!/bin/bash
# mailzone as a server added with `peers.sh --add`: a config written from the BENCH_* variables,
# then exec. The generated zone files are named <origin>.zone, which is mailzone's own layout,
# so the zone folder is served as it is (mailzone may add its associations/ folder there).
#   MAILZONE_BIN=/abs/path/target/release/mailzone peers.sh nsd knot echo --add mailzone 5305 "mailzone-peer.sh"
set -eu
bin=${MAILZONE_BIN:?set MAILZONE_BIN to the mailzone release binary}
mkdir -p -m 700 "$BENCH_RUNDIR/keys"; chmod 700 "$BENCH_RUNDIR/keys"
cat > "$BENCH_RUNDIR/mailzone.yaml" <<YAML
zones_dir: $BENCH_ZONEDIR
keys_dir: $BENCH_RUNDIR/keys
dns:
  listen: ["127.0.0.1:$BENCH_PORT"]
  udp_sockets: $BENCH_THREADS
http:
  listen: "127.0.0.1:$((BENCH_PORT + 10000))"
log:
  level: warn
diagnosis:
  resolver: "127.0.0.1:9"
YAML
exec "$bin" serve --config "$BENCH_RUNDIR/mailzone.yaml"
