#!/usr/bin/env bash
# C-STORE ingest into MIFAS with three HDFS sites, ack "quorum", against MIFAS with today's
# local-only store (no sites), same run, interleaved (issue 9, "Benchmark"); and the NameNode
# files per 10,000 instances that the pack layout leaves on a site.
#
# One command (root): bench/sites/run_site_ingest.sh
#   - generates the ingest corpus (generate.py ct: SITE_INGEST_COUNT CT instances of ~0.5 MB, in 4
#     parts) under $SITES_WORKDIR if missing;
#   - makes the WAN namespaces (wan.sh up $SITE_INGEST_RATES; default unshaped veth links) and
#     starts one MiniDFSCluster per namespace (sites.py up; namenode and datanodes bound to the
#     namespace address, so all client traffic crosses the link); measures raw TCP host -> site
#     through each link (the bound for writes);
#   - per repeat and per mode (1 association: one storescu; 4: four storescu, one per part): MIFAS
#     local-only on a fresh data dir, then MIFAS with the three sites (ack quorum, a fresh root
#     directory on every site), each timed from the first storescu start to the last exit;
#   - checks every run: no storescu error, `mifas stats` = COUNT instances; for the sites, a
#     `mifas repair --sha256-sample 0` afterwards (server stopped) must find every object on all
#     three sites (queue copies it had to finish itself are reported);
#   - counts files and blocks under each run's root on site a (WebHDFS LISTSTATUS, namenode JMX);
#   - prints the report and puts it into bench/RESULTS.md.
# Knobs:
#   SITES_WORKDIR (default /tmp/mifas-sites)  SITE_INGEST_COUNT (1000)  SITE_INGEST_REPEATS (2)
#   SITE_INGEST_RATES  per-site tc rates or none (default "none none none")
#   SITE_INGEST_MODES  subset of "1 4" (default both)   SITES_DATANODES per site (default 1)
#   SITE_QUIET_WAIT    seconds to wait for a quiet machine first (default 300; 0: no wait)
#   SITE_NO_RESULTS=1  leave RESULTS.md alone;  SITE_KEEP_RUN=1 keep the run dir
#   MIFAS_BIN (default target/release/mifas, snapshotted)  BENCH_PYTHON (pydicom + numpy)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${BENCH_PYTHON:-}" && ! -x "$HERE/../../.venv/bin/python" && -x /work/venv/bin/python ]]; then
  export BENCH_PYTHON=/work/venv/bin/python   # this machine's shared venv
fi
source "$HERE/../lib.sh"
source "$HERE/sitelib.sh"
TAG=site-ingest
WORKDIR="${SITES_WORKDIR:-/tmp/mifas-sites}"
COUNT="${SITE_INGEST_COUNT:-1000}"
REPEATS="${SITE_INGEST_REPEATS:-2}"
RATES="${SITE_INGEST_RATES:-none none none}"
MODES="${SITE_INGEST_MODES:-1 4}"
QUIET_WAIT="${SITE_QUIET_WAIT:-300}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
CORPUS="$WORKDIR/corpus/ct-$COUNT"
PARTS=4

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; RESULTS="$RUN/results.tsv"; COUNTS="$RUN/counts.tsv"
: >"$NOTES"; : >"$RESULTS"; : >"$COUNTS"
trap site_cleanup EXIT
trap 'exit 130' INT TERM
"$PY" -c 'import pydicom, numpy' 2>/dev/null || die "$PY lacks pydicom/numpy: set BENCH_PYTHON"

send_corpus() {  # mode port logprefix -> SEND_SECS SEND_FAIL
  local mode=$1 port=$2 lp=$3 t0 pids=() p
  SEND_FAIL=0; t0=$(now)
  if [[ $mode == 1 ]]; then
    "$STORESCU" -aet BENCH -aec MIFAS +sd +r 127.0.0.1 "$port" "$CORPUS" >"$lp.1.log" 2>&1 || SEND_FAIL=1
  else
    for ((p = 0; p < PARTS; p++)); do
      "$STORESCU" -aet BENCH -aec MIFAS +sd +r 127.0.0.1 "$port" "$CORPUS/part$p" >"$lp.$p.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || SEND_FAIL=1; done
  fi
  SEND_SECS=$(secs "$t0" "$(now)")
  if grep -hE '^(E|F): |Status: (Failed|Refused|Error)' "$lp".*.log >/dev/null 2>&1; then SEND_FAIL=1; fi
}

measure() {  # target(local|sites) mode repeat
  local target=$1 mode=$2 r=$3 d cfg="" root="" note="" c0 c1 n rate cpu drain="-" repair="-"
  d="$RUN/$target-m$mode-r$r"; mkdir -p "$d"
  if [[ $target == sites ]]; then
    root="/mifas-m$mode-r$r"; cfg="$d/mifas.toml"
    site_config "$cfg" "$d/data" --ack quorum --root "$root"
    start_mifas "$d" --config "$cfg" --data-dir "$d/data" || { note "sites m$mode r$r: MIFAS did not start"; return 1; }
  else
    start_mifas "$d" --data-dir "$d/data" || { note "local m$mode r$r: MIFAS did not start"; return 1; }
  fi
  rss_guard "$MIFAS_PID" "$target-m$mode-r$r"
  sync
  local j0 j1 jvm="-"
  j0=$(jvm_ticks)
  c0=$(cpu_ticks "$MIFAS_PID"); send_corpus "$mode" "$MIFAS_PORT" "$d/send"; c1=$(cpu_ticks "$MIFAS_PID")
  j1=$(jvm_ticks)
  [[ $target == sites ]] && jvm=$(tick_secs "$j0" "$j1")
  [[ $SEND_FAIL == 0 ]] || { note="storescu-errors"; note "$target ${mode}assoc r$r: storescu errors: $(grep -hE '^(E|F): ' "$d"/send.*.log | sort | uniq -c | head -3 | tr '\n' ' ')"; }
  stop_pid "$MIFAS_PID" "mifas"
  [[ $STOP_RC == 0 ]] || note "mifas ($target m$mode r$r) exited $STOP_RC after SIGTERM"
  ! grep -q killed "$RUN/rss-$target-m$mode-r$r.txt" 2>/dev/null ||
    note "mifas ($target m$mode r$r) killed by the RSS watchdog: $(cat "$RUN/rss-$target-m$mode-r$r.txt")"
  n=$(mifas_stat "$d/data" "$cfg" instances)
  [[ "$n" == "$COUNT" ]] || { note="${note:+$note,}stats=$n"; note "$target ${mode}assoc r$r: mifas stats says instances: ${n:-?}"; }
  if [[ $target == sites ]]; then
    # every object must now be on all three sites: what the queue had not copied yet at SIGTERM,
    # repair copies (queue_copied); checked must be COUNT on every site with nothing missing
    "$MIFAS_BIN" repair --config "$cfg" --data-dir "$d/data" --sha256-sample 0 >"$d/repair.txt" 2>>"$d/log.txt" ||
      { note="${note:+$note,}repair-failed"; note "sites m$mode r$r: repair exited non-zero: $(tr '\n' ' ' <"$d/repair.txt")"; }
    repair=$(tr '\n' ' ' <"$d/repair.txt")
    local bad; bad=$(awk -v n="$COUNT" '/^site /{ if ($4 != n || $6 != 0 || $8 != 0) print }' "$d/repair.txt")
    [[ -z "$bad" && $(grep -c '^site ' "$d/repair.txt") == 3 ]] ||
      { note="${note:+$note,}not-on-3"; note "sites m$mode r$r: not every object on all three sites: $repair"; }
    local x
    for x in a b c; do
      printf '%s\t%s\t%s\t%s\n' "$mode" "$r" "$x" "$("${SITES_PY[@]}" count --sites-json "$SITES_JSON" --site "$x" --path "$root" 2>&1 | tr '\n' ' ')" >>"$COUNTS"
    done
  fi
  rate=$(python3 -c "print(f'{$COUNT / $SEND_SECS:.1f}')"); cpu=$(tick_secs "$c0" "$c1")
  local peak; peak=$(awk '{print int($2 / 1024)}' "$RUN/rss-$target-m$mode-r$r.txt" 2>/dev/null || echo "?")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$r" "$COUNT" "$SEND_SECS" "$rate" "$cpu" "${note:--}" "$repair" "${peak:-?}" "$jvm" >>"$RESULTS"
  log "$target ${mode} assoc (repeat $r): $COUNT in ${SEND_SECS}s = $rate inst/s (MIFAS CPU ${cpu}s)${note:+ [$note]}"
  rm -rf "$d/data/spool"
}

jvm_ticks() {  # CPU ticks of the three site JVMs together (datanodes, namenodes)
  local p v t=0
  for p in $(python3 -c 'import json, sys; print(" ".join(str(s["pid"]) for s in json.load(open(sys.argv[1]))))' "$SITES_JSON"); do
    v=$(cpu_ticks "$p"); t=$((t + ${v:-0}))
  done
  echo "$t"
}

# ---- main ----------------------------------------------------------------------------------------
if [[ ! -f "$CORPUS.complete" ]]; then
  log "generating corpus ($COUNT CT instances) in $CORPUS"
  rm -rf "$CORPUS"; "$PY" "$BENCH_DIR/generate.py" ct "$CORPUS" --count "$COUNT" --parts "$PARTS"
fi
[[ -x "$MIFAS_BIN" ]] || die "$MIFAS_BIN missing (cargo build --release)"
envset mifas_bin "$(bin_info "$MIFAS_BIN")"; MIFAS_BIN=$(snapshot_bin "$MIFAS_BIN")
wan_up $RATES
sites_up "$RUN/hdfs" --sites 3 --datanodes "${SITES_DATANODES:-1}" --replication 1
link_bound write 1 2 3
wait_quiet "site ingest measurements"
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset disk "$(disk_of "$WORKDIR")"
envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"; envset repeats "$REPEATS"
envset dcmtk "$(dcmtk_version)"
envset corpus "$COUNT CT instances, $(find "$CORPUS" -name '*.dcm' -printf '%s\n' | sort -u | head -1) bytes each, $(du -sb "$CORPUS" | cut -f1) bytes in all; storescu +sd +r, TCP_NODELAY=1"
envset bytes_per_instance "$(( $(du -sb "$CORPUS" | cut -f1) / COUNT ))"
envset pack_max_mb "1024 (default)"
envset rates "$RATES"
envset sites "3 MiniDFSCluster sites (hadoop-client-minicluster, tests/minidfs), 1 namenode + ${SITES_DATANODES:-1} datanode(s) each, replication 1, one network namespace each (veth, 198.18.i.2), JVM $MINIDFS_JAVA_OPTS"
envset sites_json "$(tr -d '\n' <"$SITES_JSON")"
log "run dir $RUN, repeats $REPEATS, modes $MODES"
# warm-up, not recorded: the datanodes' JIT, the page cache of the corpus, hdfs-native's first
# connections (one quarter of the corpus, 4 associations, into each target)
for t in local sites; do
  d="$RUN/warmup-$t"; mkdir -p "$d"
  if [[ $t == sites ]]; then
    site_config "$d/mifas.toml" "$d/data" --ack quorum --root /mifas-warmup
    start_mifas "$d" --config "$d/mifas.toml" --data-dir "$d/data" || die "MIFAS with sites did not start (warm-up)"
  else
    start_mifas "$d" --data-dir "$d/data" || die "MIFAS did not start (warm-up)"
  fi
  "$STORESCU" -aet BENCH -aec MIFAS +sd +r 127.0.0.1 "$MIFAS_PORT" "$CORPUS/part0" >"$d/send.log" 2>&1 || note "warm-up $t: storescu failed"
  stop_pid "$MIFAS_PID" mifas; rm -rf "$d/data"
done
for ((r = 1; r <= REPEATS; r++)); do
  for mode in $MODES; do
    # alternate which target goes first: the page cache and the JIT of the datanodes warm up
    if ((r % 2)); then order="local sites"; else order="sites local"; fi
    for t in $order; do measure "$t" "$mode" "$r" || true; done
  done
done
"$PY" "$HERE/report_sites.py" ingest "$RUN" >"$RUN/report.md" || { SITE_KEEP_RUN=1; die "report failed; raw results kept in $RUN"; }
cat "$RUN/report.md"
[[ "${SITE_NO_RESULTS:-0}" == 1 ]] || append_results "$RUN/report.md"
