#!/usr/bin/env bash
# Read of one large object (default 1 GiB) from three HDFS sites behind emulated WAN links:
# the best single site against co-allocation over all three, links equal and 4:2:1 (issue 9,
# "Benchmark"), with the raw TCP bound of the links and the reader's peak RSS, same run.
#
# One command (root): bench/sites/run_coalloc.sh
#   - WAN namespaces, one MiniDFSCluster per namespace (sites.py up); the object is written once
#     onto every site over unshaped links (cargo example coalloc_read put: PackSite + HdfsFs);
#   - per link case (COALLOC_CASES, default "equal 4:2:1"): shape the links, measure raw TCP site ->
#     host (each alone, all at once), then read the whole object in a fresh process with each
#     COALLOC_MODES mode (default "single coalloc"; single = from site a, the fastest link,
#     COALLOC_IN_FLIGHT ranges of COALLOC_RANGE_MB outstanding) and check its SHA-256;
#   - prints the report and puts it into bench/RESULTS.md.
# Knobs: COALLOC_SIZE_MB (1024)  COALLOC_EQUAL_RATE (200mbit)  COALLOC_421_RATES ("400mbit 200mbit 100mbit")
#   COALLOC_RANGE_MB (4)  COALLOC_IN_FLIGHT (4)  SITES_WORKDIR  SITE_NO_RESULTS=1  SITE_KEEP_RUN=1
#   EXAMPLE_BIN (default target/release/examples/coalloc_read; `cargo build --release --example coalloc_read`)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${BENCH_PYTHON:-}" && ! -x "$HERE/../../.venv/bin/python" && -x /work/venv/bin/python ]]; then
  export BENCH_PYTHON=/work/venv/bin/python   # this machine's shared venv
fi
source "$HERE/../lib.sh"
source "$HERE/sitelib.sh"
TAG=coalloc
WORKDIR="${SITES_WORKDIR:-/tmp/mifas-sites}"
SIZE_MB="${COALLOC_SIZE_MB:-1024}"
CASES="${COALLOC_CASES:-equal 4:2:1}"
MODES="${COALLOC_MODES:-single coalloc}"
EQUAL="${COALLOC_EQUAL_RATE:-200mbit}"
R421="${COALLOC_421_RATES:-400mbit 200mbit 100mbit}"
RANGE_MB="${COALLOC_RANGE_MB:-4}" IN_FLIGHT="${COALLOC_IN_FLIGHT:-4}"
EXAMPLE_BIN="${EXAMPLE_BIN:-$REPO/target/release/examples/coalloc_read}"

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; RESULTS="$RUN/results.tsv"
: >"$NOTES"; : >"$RESULTS"
FAILED=0
trap site_cleanup EXIT
trap 'exit 130' INT TERM
[[ -x "$EXAMPLE_BIN" ]] || die "$EXAMPLE_BIN missing: cargo build --release --example coalloc_read"
envset example_bin "$(bin_info "$EXAMPLE_BIN")"; EXAMPLE_BIN=$(snapshot_bin "$EXAMPLE_BIN")

wan_up none none none
sites_up "$RUN/hdfs" --sites 3 --datanodes "${SITES_DATANODES:-1}" --replication 1
CFG="$RUN/mifas.toml"; OBJ="$RUN/object.txt"
site_config "$CFG" "$RUN/data" --ack all --root /mifas-coalloc
log "writing the ${SIZE_MB} MiB object onto the three sites (unshaped links)"
"$EXAMPLE_BIN" put --config "$CFG" --object "$OBJ" --size-mb "$SIZE_MB" --work "$RUN/work" 2>"$RUN/put.log" ||
  die "put failed: $(tail -3 "$RUN/put.log")"
log "$(tr '\n' ' ' <"$RUN/put.log")"
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
envset object "$SIZE_MB MiB, one pack record per site (HDFS default block size), written by coalloc_read put"
envset sites "3 MiniDFSCluster sites (1 namenode + ${SITES_DATANODES:-1} datanode), one network namespace each, tbf both ways"
envset single "one site (site a, the fastest link), ${RANGE_MB} MiB ranges, ${IN_FLIGHT} outstanding, in order"
for c in $CASES; do
  case "$c" in
    equal) rates="$EQUAL $EQUAL $EQUAL" ;;
    4:2:1) rates="$R421" ;;
    *) die "unknown case $c (equal, 4:2:1)" ;;
  esac
  "$WAN" shape $rates >>"$RUN/wan.log" 2>&1 || die "wan.sh shape failed"
  link_bound read 1 2 3; cp "$RUN/link-read.txt" "$RUN/link-$c.txt"
  for m in $MODES; do
    args=(--mode "$m"); [[ $m == single ]] && args+=(--site site-a --range-mb "$RANGE_MB" --in-flight "$IN_FLIGHT")
    sync
    if "$EXAMPLE_BIN" read --config "$CFG" --object "$OBJ" "${args[@]}" >"$RUN/read-$c-$m.txt" 2>"$RUN/read-$c-$m.log"; then
      log "$c $m: $(tr '\n' ' ' <"$RUN/read-$c-$m.txt")"
      printf '%s\t%s\t%s\n' "$c" "$m" "$(tr '\n' ' ' <"$RUN/read-$c-$m.txt")" >>"$RESULTS"
    else
      note "$c $m: read failed: $(tail -2 "$RUN/read-$c-$m.log" | tr '\n' ' ')"; FAILED=1
    fi
  done
done
"$PY" "$HERE/report_sites.py" coalloc "$RUN" >"$RUN/report.md" || { SITE_KEEP_RUN=1; die "report failed; raw results kept in $RUN"; }
cat "$RUN/report.md"
[[ "${SITE_NO_RESULTS:-0}" == 1 ]] || append_results "$RUN/report.md"
exit $FAILED
