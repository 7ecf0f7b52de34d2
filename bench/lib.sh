# Shared by the bench scripts (sourced, from the repository's root). It owns the two things
# every one of them does the same way; it must not measure anything.
#
# bench_relock SCRIPT ARGS...: builds the release binary (xcargo when present), then runs
# SCRIPT ARGS again under the machine-wide cargo lock with a private copy of the binary in
# $MAILZONE_BIN, and exits with its status: no build can run beside a measurement, and a
# rebuild during the run cannot swap the binary. Inside that locked run it returns at once.
bench_relock() {
  [ -n "${MAILZONE_BENCH_LOCKED:-}" ] && return 0
  local cargo=cargo built copy status=0
  command -v xcargo >/dev/null && cargo=xcargo
  built=$($cargo build --release --locked --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "mailzone":
        print(m["executable"])')
  copy=$(mktemp -d)
  cp "$built" "$copy/mailzone"
  MAILZONE_BENCH_LOCKED=1 MAILZONE_BIN="$copy/mailzone" flock /tmp/mailzone-cargo.lock "$@" || status=$?
  rm -rf "$copy"
  exit "$status"
}

# bench_workdir: sets $bin, a fresh $work folder and $pids (background processes the script
# starts), all cleaned up on exit.
bench_workdir() {
  bin=$MAILZONE_BIN
  work=$(mktemp -d)
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
