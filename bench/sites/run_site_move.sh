#!/usr/bin/env bash
# C-MOVE of a 500-instance CT study from MIFAS whose copies are on three HDFS sites behind links
# shaped 4:2:1, against MIFAS whose only site is the best of the three (issue 9, "Benchmark").
#
# One command (root): bench/sites/run_site_move.sh
#   - generates the study (generate.py study: SITE_MOVE_COUNT CT instances of ~0.5 MB) if missing;
#   - makes the WAN namespaces, starts one MiniDFSCluster per namespace (sites.py up), one DCMTK
#     storescp (default options) as the C-MOVE destination;
#   - loads the study over unshaped links into two MIFAS instances on the same three sites:
#       three: sites a, b, c, ack "all" (every instance on every site; root /mifas-three)
#       best:  site a only (ack "1"; its own root /mifas-best on the same site a)
#     Both read the same site a through the same link; "best" is what the archive would do with
#     only its best site; "three" may read from all three (co-allocation). Both are restarted
#     after the load, so that every read goes to the datanodes (see start_target);
#   - shapes the links to SITE_MOVE_RATES (default 400mbit 200mbit 100mbit, each way) and measures
#     raw TCP site -> host through each link alone and all three at once (the bound);
#   - per repeat (after one untimed warm-up each; order alternating): movescu -S -aem STORESCP of the
#     whole study from each MIFAS, timed from movescu start to exit; the destination is emptied and
#     synced before each, and checked after each (bench/retrieve/verify_dest.py: exactly the
#     study's instances, 3 sampled files equal to the source);
#   - prints the report and puts it into bench/RESULTS.md.
# Re-run after a change to the retrieve path: `cargo build --release && bench/sites/run_site_move.sh`
# Knobs:
#   SITES_WORKDIR (default /tmp/mifas-sites)  SITE_MOVE_COUNT (500)  SITE_MOVE_REPEATS (3)
#   SITE_MOVE_RATES (default "400mbit 200mbit 100mbit"; "200mbit 200mbit 200mbit" for equal links)
#   SITE_MOVE_TARGETS subset of "three best" (default both)   SITES_DATANODES (default 1)
#   SITE_QUIET_WAIT (default 300)  SITE_NO_RESULTS=1  SITE_KEEP_RUN=1  MIFAS_BIN  BENCH_PYTHON
# Exit status: 0 when every retrieve was verified.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${BENCH_PYTHON:-}" && ! -x "$HERE/../../.venv/bin/python" && -x /work/venv/bin/python ]]; then
  export BENCH_PYTHON=/work/venv/bin/python   # this machine's shared venv
fi
source "$HERE/../lib.sh"
source "$HERE/sitelib.sh"
TAG=site-move
WORKDIR="${SITES_WORKDIR:-/tmp/mifas-sites}"
COUNT="${SITE_MOVE_COUNT:-500}"
REPEATS="${SITE_MOVE_REPEATS:-3}"
RATES="${SITE_MOVE_RATES:-400mbit 200mbit 100mbit}"
TARGETS="${SITE_MOVE_TARGETS:-three best}"
QUIET_WAIT="${SITE_QUIET_WAIT:-300}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
STUDY="$WORKDIR/study-$COUNT"
CALLING=MOVEBENCH DEST_AET=STORESCP CLIENT_TIMEOUT=600

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; RESULTS="$RUN/results.tsv"
: >"$NOTES"; : >"$RESULTS"
FAILED=0
trap site_cleanup EXIT
trap 'exit 130' INT TERM
"$PY" -c 'import pydicom, numpy' 2>/dev/null || die "$PY lacks pydicom/numpy: set BENCH_PYTHON"
want() { [[ " $TARGETS " == *" $1 "* ]]; }

declare -A PORT PID
start_target() {  # three|best: config, start, load the study
  local t=$1 d="$RUN/$1" lg
  mkdir -p "$d"
  if [[ $t == three ]]; then
    site_config "$d/mifas.toml" "$d/data" --ack all --root /mifas-three
  else
    site_config "$d/mifas.toml" "$d/data" --ack 1 --only a --root /mifas-best
  fi
  printf '\n[dicom]\naet = "MIFAS"\n\n[[remote_ae]]\naet = "%s"\nhost = "127.0.0.1"\nport = %s\n' "$DEST_AET" "$SCP_PORT" >>"$d/mifas.toml"
  start_mifas "$d" --config "$d/mifas.toml" --data-dir "$d/data" || die "MIFAS ($t) did not start: $(tail -3 "$d/log.txt")"
  PORT[$t]=$MIFAS_PORT PID[$t]=$MIFAS_PID
  lg="$d/load.log"
  "$STORESCU" -aet "$CALLING" -aec MIFAS +sd +r 127.0.0.1 "$MIFAS_PORT" "$STUDY" >"$lg" 2>&1 ||
    die "MIFAS ($t): loading the study failed: $(grep -hE '^(E|F): ' "$lg" | head -3 | tr '\n' ' ')"
  ! grep -qE '^(E|F): ' "$lg" || die "MIFAS ($t): storescu reported errors while loading"
  # A fresh process: the one that wrote the packs serves reads of their unfinished last block
  # from its writer's memory (HdfsFs), which would bypass the links. An archive reads studies
  # stored long ago, from the datanodes.
  stop_pid "$MIFAS_PID" "mifas ($t)"
  start_mifas "$d" --config "$d/mifas.toml" --data-dir "$d/data" || die "MIFAS ($t) did not restart: $(tail -3 "$d/log.txt")"
  PORT[$t]=$MIFAS_PORT PID[$t]=$MIFAS_PID
  rss_guard "$MIFAS_PID" "$t"
}

measure() {  # target repeat
  local t=$1 r=$2 lg="$RUN/move-$1-$2" rc=0 t0 s check mb rate
  rm -rf "$DEST_DIR"; mkdir -p "$DEST_DIR"; sync
  t0=$(now)
  timeout "$CLIENT_TIMEOUT" "$MOVESCU" -v -S -aet "$CALLING" -aec MIFAS -aem "$DEST_AET" \
    -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY_UID" 127.0.0.1 "${PORT[$t]}" >"$lg.log" 2>&1 || rc=$?
  s=$(secs "$t0" "$(now)")
  if [[ $rc != 0 ]]; then check="movescu-exit-$rc"
  elif ! grep -q 'Status: Success' "$lg.log" && ! grep -qi 'Final status.*Success\|Received Final Move Response (Success)' "$lg.log"; then check="no-final-success"
  elif ! v=$("$PY" "$BENCH_DIR/retrieve/verify_dest.py" "$STUDY" "$DEST_DIR" --sample 3 --seed "$r" 2>&1); then check="dest: $(head -2 <<<"$v" | tr '\n' ' ')"
  else check=ok; fi
  [[ $check == ok ]] || { FAILED=1; note "$t r$r: $check (log $lg.log)"; }
  mb=$(python3 -c "print(f'{$STUDY_BYTES / 1e6 / $s:.2f}')"); rate=$(python3 -c "print(f'{$COUNT / $s:.1f}')")
  ((r > 0)) && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$COUNT" "$s" "$rate" "$mb" "$check" >>"$RESULTS"
  log "$t $([[ $r == 0 ]] && echo warm-up || echo "repeat $r"): ${s}s = $mb MB/s, $rate inst/s ($check)"
}

# ---- main ----------------------------------------------------------------------------------------
if [[ ! -f "$STUDY.complete" ]]; then
  log "generating the study ($COUNT CT instances) in $STUDY"
  rm -rf "$STUDY"; "$PY" "$BENCH_DIR/generate.py" study "$STUDY" --count "$COUNT"
fi
STUDY_UID=$(cat "$STUDY.study")
STUDY_BYTES=$(find "$STUDY" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
[[ -x "$MIFAS_BIN" ]] || die "$MIFAS_BIN missing (cargo build --release)"
envset mifas_bin "$(bin_info "$MIFAS_BIN")"; MIFAS_BIN=$(snapshot_bin "$MIFAS_BIN")
read -r -a rate_list <<<"$RATES"
((${#rate_list[@]} == 3)) || die "SITE_MOVE_RATES needs three rates"
wan_up none none none   # the study is loaded over unshaped links; shaped for the measurements
sites_up "$RUN/hdfs" --sites 3 --datanodes "${SITES_DATANODES:-1}" --replication 1
DEST_DIR="$RUN/dest"
start_storescp "$DEST_DIR" || die "storescp did not start"
for t in $TARGETS; do start_target "$t"; log "$t: study loaded"; done
"$WAN" shape $RATES >>"$RUN/wan.log" 2>&1 || die "wan.sh shape failed"
link_bound read 1 2 3
wait_quiet "site C-MOVE measurements"
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
envset count "$COUNT"; envset repeats "$REPEATS"; envset dcmtk "$(dcmtk_version)"
envset ratio "$(python3 -c "import re,sys; v=[float(re.match(r'[0-9.]+', x)[0]) for x in sys.argv[1:]]; print(':'.join(f'{x / min(v):g}' for x in v))" $RATES) ($RATES each way, tbf)"
envset study "$COUNT CT instances, $STUDY_BYTES bytes, one study; Explicit VR LE"
envset sites "3 MiniDFSCluster sites, 1 namenode + ${SITES_DATANODES:-1} datanode(s), replication 1, one network namespace each; site a has the fastest link"
envset targets "three = MIFAS with sites a, b, c (loaded with ack all, every copy on every site); best = MIFAS with site a only (its own root on the same site, same link)"
envset destination "one DCMTK storescp -od DIR (default options), emptied + sync before each C-MOVE; movescu -S, TCP_NODELAY=1; time = movescu start to exit"
log "run dir $RUN; targets: $TARGETS; warm-up + $REPEATS repeats"
for ((r = 0; r <= REPEATS; r++)); do
  order="$TARGETS"; ((r % 2)) && order="$(echo $TARGETS | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')"
  for t in $order; do measure "$t" "$r"; done
done
for t in $TARGETS; do
  kill -0 "${PID[$t]}" 2>/dev/null || { note "MIFAS ($t) died during the run $(cat "$RUN/rss-$t.txt" 2>/dev/null)"; FAILED=1; }
  envset "peak_rss_$t" "$(awk '{print int($2 / 1024) " MiB"}' "$RUN/rss-$t.txt" 2>/dev/null) (VmRSS sampled every second, MIFAS after its restart: all C-MOVEs)"
  w=$(grep -hE ' (ERROR|WARN) ' "$RUN/$t/log.txt" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -3 | tr -s ' ' | tr '\n' ';' || true)
  [[ -z "$w" ]] || note "MIFAS ($t) warnings/errors in its log: $w"
done
"$PY" "$HERE/report_sites.py" move "$RUN" >"$RUN/report.md" || { SITE_KEEP_RUN=1; die "report failed; raw results kept in $RUN"; }
cat "$RUN/report.md"
if [[ "${SITE_NO_RESULTS:-0}" != 1 ]]; then
  if [[ $FAILED == 0 ]]; then append_results "$RUN/report.md"; else log "a check failed: RESULTS.md not touched"; fi
fi
exit $FAILED
