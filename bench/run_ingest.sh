#!/usr/bin/env bash
# MIFAS ingest benchmark (issue 2). One command: bench/run_ingest.sh
#   - generates the corpus (BENCH_COUNT CT instances 512x512x16-bit, ~0.5 MB) and one multi-frame
#     instance (BENCH_FRAMES frames, 524 MB at 1000) under $BENCH_WORKDIR if missing;
#   - sends the corpus with DCMTK storescu over 1 association and over 4 (4 storescu processes,
#     one per quarter of the corpus) into MIFAS, DCMTK storescp and Orthanc, each started fresh on
#     an empty data dir for every measurement; times a raw "write + fsync + rename" loop (and the
#     same + directory fsync) of the same sizes on the same disk;
#   - measures the peak RSS (VmHWM) of each server while it receives the multi-frame instance;
#   - prints the report and puts it into bench/RESULTS.md (method: RESULTS.md, "Method").
# Knobs:
#   BENCH_WORKDIR     corpus and run data (default /tmp/mifas-bench). The corpus is kept for reuse;
#                     BENCH_CLEAN=1 removes it at exit. BENCH_KEEP_RUN=1 keeps the run dir.
#   BENCH_COUNT       corpus instances (default 1000); BENCH_FRAMES multi-frame frames (default 1000)
#   BENCH_REPEATS     measurements per configuration (default 5), targets interleaved per repeat
#   BENCH_TARGETS     subset of "raw storescp orthanc mifas" (default: all)
#   BENCH_QUIET_WAIT  seconds to wait for no compiler and >= 85 % idle CPUs (default 900; 0: no wait)
#   BENCH_SKIP_RSS=1  no multi-frame RSS measurement;  BENCH_NO_RESULTS=1  leave RESULTS.md alone
#   MIFAS_BIN         default target/release/mifas (not built by this script; snapshotted)
#   BENCH_PYTHON      Python with pydicom, numpy (default .venv/bin/python, made by tests/run.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TAG=bench
WORKDIR="${BENCH_WORKDIR:-/tmp/mifas-bench}"
REPEATS="${BENCH_REPEATS:-5}"
TARGETS="${BENCH_TARGETS:-raw storescp orthanc mifas}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
COUNT="${BENCH_COUNT:-1000}"
FRAMES="${BENCH_FRAMES:-1000}"
PARTS=4
QUIET_WAIT="${BENCH_QUIET_WAIT:-900}"
CORPUS="$WORKDIR/corpus/ct-$COUNT"
BIG="$WORKDIR/corpus/big-$FRAMES.dcm"

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
RESULTS="$RUN/results.tsv"   # target mode repeat count seconds rate stored note busy server_cpu_s
RSSFILE="$RUN/rss.tsv"       # server baseline_kb hwm_kb stored_bytes note
NOTES="$RUN/notes.txt"
: >"$RESULTS"; : >"$RSSFILE"; : >"$NOTES"
CLEAN_DIR=""; [[ "${BENCH_CLEAN:-0}" != 1 ]] || CLEAN_DIR="$WORKDIR/corpus"
trap 'finish_run "${BENCH_KEEP_RUN:-0}" "$CLEAN_DIR"' EXIT
trap 'exit 130' INT TERM
want() { [[ " $TARGETS " == *" $1 "* ]]; }

start_target() {  # target [storescp option] -> SPID PORT AEC DATA
  DATA="$(mktemp -d "$RUN/$1.XXXX")"
  case "$1" in
    storescp*) start_storescp "$DATA/files" ${2:-} && SPID=$SCP_PID PORT=$SCP_PORT AEC=STORESCP ;;
    orthanc) start_orthanc "$DATA" '"SyncStorageArea": true' && SPID=$ORTH_PID PORT=$ORTH_PORT AEC=ORTHANC ;;
    mifas) start_mifas "$DATA" --data-dir "$DATA/data" && SPID=$MIFAS_PID PORT=$MIFAS_PORT AEC=MIFAS ;;
  esac
}
stored_dir() { case "$1" in storescp*) echo "$DATA/files" ;; orthanc) echo "$DATA/storage" ;; mifas) echo "$DATA/data/objects" ;; esac; }
stored_count() {
  if [[ $1 == orthanc ]]; then orthanc_count; else find "$(stored_dir "$1")" -type f | wc -l; fi
}
send_corpus() {  # mode(1|4) logprefix -> SEND_SECS SEND_FAIL
  local t0 pids=() p
  SEND_FAIL=0; t0=$(now)
  if [[ $1 == 1 ]]; then
    "$STORESCU" -aet BENCH -aec "$AEC" +sd +r 127.0.0.1 "$PORT" "$CORPUS" >"$2.1.log" 2>&1 || SEND_FAIL=1
  else
    for ((p = 0; p < PARTS; p++)); do
      "$STORESCU" -aet BENCH -aec "$AEC" +sd +r 127.0.0.1 "$PORT" "$CORPUS/part$p" >"$2.$p.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || SEND_FAIL=1; done
  fi
  SEND_SECS=$(secs "$t0" "$(now)")
  # storescu prints E:/F: lines for failed stores or non-success statuses
  if grep -hE '^(E|F): |Status: (Failed|Refused|Error)' "$2".*.log >/dev/null 2>&1; then SEND_FAIL=1; fi
}
measure() {  # target mode repeat
  local target=$1 mode=$2 r=$3 stored note="" c0 c1 busy=0
  start_target "$target" "$([[ $target == storescp-fork ]] && echo --fork)" ||
    { note "$target: server did not start (mode $mode, repeat $r)"; stop_all_pids; return 1; }
  busy && busy=1
  c0=$(cpu_ticks "$SPID"); send_corpus "$mode" "$DATA/send"; c1=$(cpu_ticks "$SPID")
  busy && busy=1
  stored=$(stored_count "$target")
  if [[ $SEND_FAIL != 0 ]]; then
    note="storescu-errors"
    note "$target ${mode}assoc r$r: storescu reported errors: $(grep -hE '^(E|F): ' "$DATA"/send.*.log | sort | uniq -c | head -5 | tr '\n' ' ')"
  fi
  if [[ "$stored" != "$COUNT" ]]; then
    note="${note:+$note,}stored=$stored"; note "$target ${mode}assoc r$r: server holds $stored instances, expected $COUNT"
  fi
  if [[ $target == mifas ]] && ! v=$("$PY" "$BENCH_DIR/verify_mifas.py" "$CORPUS" "$DATA/data/objects" --sample 20 2>&1); then
    note "mifas ${mode}assoc r$r: stored objects differ from the corpus: $(head -3 <<<"$v" | tr '\n' ' ')"
  fi
  stop_pid "$SPID" "$target"
  if [[ $target == mifas ]]; then
    [[ $STOP_RC == 0 ]] || note "mifas exited with code $STOP_RC after SIGTERM (expected 0)"
    local n; n=$("$MIFAS_BIN" stats --data-dir "$DATA/data" 2>&1 | sed -n 's/^instances: //p')
    [[ "$n" == "$COUNT" ]] || note "mifas ${mode}assoc r$r: 'mifas stats' says instances: ${n:-?}"
  fi
  local rate cpu; rate=$(python3 -c "print(f'{$COUNT / $SEND_SECS:.1f}')"); cpu=$(tick_secs "$c0" "$c1")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$r" "$COUNT" "$SEND_SECS" "$rate" "$stored" "${note:--}" "$busy" "$cpu" >>"$RESULTS"
  log "$target $mode assoc (repeat $r): $COUNT in ${SEND_SECS}s = $rate inst/s (stored $stored, server CPU ${cpu}s)${note:+ [$note]}"
  rm -rf "$DATA"
}
measure_raw() {  # repeat
  local variant d n s rate busy
  for variant in fsync dirsync; do
    d="$(mktemp -d "$RUN/raw.XXXX")"; busy=0; busy && busy=1
    read -r n s rate <<<"$("$PY" "$BENCH_DIR/raw_fsync.py" "$CORPUS" "$d" $([[ $variant == dirsync ]] && echo --dirsync))"
    busy && busy=1
    printf '%s\t1\t%s\t%s\t%s\t%s\t%s\t-\t%s\t-\n' "raw-$variant" "$1" "$n" "$s" "$rate" "$n" "$busy" >>"$RESULTS"
    log "raw loop ($variant): $n files in ${s}s = $rate files/s"
    rm -rf "$d"; sync
  done
}
measure_rss() {  # target: VmHWM before and after receiving the multi-frame instance
  local target=$1 base hwm bytes note=""
  start_target "$target" || { note "$target: server did not start for RSS"; stop_all_pids; return 1; }
  base=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$SPID/status")
  "$STORESCU" -aet BENCH -aec "$AEC" 127.0.0.1 "$PORT" "$BIG" >"$DATA/big.log" 2>&1 || note="storescu-failed"
  grep -qE '^(E|F): ' "$DATA/big.log" && note="storescu-errors"
  hwm=$(awk '$1 == "VmHWM:" {print $2}' "/proc/$SPID/status")
  bytes=$(find "$(stored_dir "$target")" -type f -printf '%s\n' | sort -n | tail -1)
  [[ -z "$bytes" ]] && { bytes=0; note="${note:+$note,}not-stored"; }
  [[ -n "$note" ]] && note "RSS $target: $note ($(grep -hE '^(E|F): ' "$DATA/big.log" | head -3 | tr '\n' ' '))"
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$base" "$hwm" "$bytes" "${note:--}" >>"$RSSFILE"
  log "RSS $target: VmHWM before ${base} kB, after the ${bytes}-byte store ${hwm} kB${note:+ [$note]}"
  stop_pid "$SPID" "$target"; rm -rf "$DATA"
}

# ---- main ----------------------------------------------------------------------------------------
if [[ ! -f "$CORPUS.complete" ]]; then
  log "generating corpus ($COUNT CT instances) in $CORPUS"
  rm -rf "$CORPUS"; "$PY" "$BENCH_DIR/generate.py" ct "$CORPUS" --count "$COUNT" --parts "$PARTS"
fi
if [[ "${BENCH_SKIP_RSS:-0}" != 1 && ! -f "$BIG" ]]; then
  log "generating the $FRAMES-frame instance in $BIG"; "$PY" "$BENCH_DIR/generate.py" multiframe "$BIG" --frames "$FRAMES"
fi
if want mifas; then
  if [[ ! -x "$MIFAS_BIN" ]]; then
    note "mifas: $MIFAS_BIN missing (cargo build --release); MIFAS skipped"; TARGETS="${TARGETS/mifas/}"
  else
    envset mifas_bin "$(bin_info "$MIFAS_BIN")"; MIFAS_BIN=$(snapshot_bin "$MIFAS_BIN")
    if start_target mifas; then stop_pid "$SPID" mifas; rm -rf "$DATA"; else
      note "mifas: binary does not serve (no READY line or no C-ECHO answer); MIFAS skipped"
      stop_all_pids; TARGETS="${TARGETS/mifas/}"
    fi
  fi
fi
wait_quiet "ingest measurements"
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset disk "$(disk_of "$WORKDIR")"
envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"; envset repeats "$REPEATS"
envset peers "DCMTK $(dcmtk_version); $(orthanc_version)"
envset corpus "$COUNT CT instances, $(find "$CORPUS" -name '*.dcm' -printf '%s\n' | sort -u | head -1) bytes each; storescu +sd +r, TCP_NODELAY=1"
envset big "$FRAMES-frame Enhanced CT, $( [[ -f "$BIG" ]] && stat -c %s "$BIG") bytes"
log "run dir $RUN, repeats $REPEATS, targets: $TARGETS"
sync  # dirty pages of corpus generation must not land in the first measurement
# Order inside a repeat: the raw loops run right before MIFAS 1 assoc, the figure they are compared
# with; sync before every measurement (storescp does not fsync: its dirty pages are flushed first)
for ((r = 1; r <= REPEATS; r++)); do
  for mode in 1 4; do
    if want storescp; then
      sync; measure storescp "$mode" "$r" || true
      if [[ $mode == 4 ]]; then sync; measure storescp-fork "$mode" "$r" || true; fi
    fi
    if want orthanc; then sync; measure orthanc "$mode" "$r" || true; fi
    if [[ $mode == 1 ]] && want raw; then sync; measure_raw "$r"; fi
    if want mifas; then sync; measure mifas "$mode" "$r" || true; fi
  done
done
if [[ "${BENCH_SKIP_RSS:-0}" != 1 ]]; then
  for t in mifas orthanc storescp; do if want "$t"; then measure_rss "$t" || true; fi; done
fi
(cd "$BENCH_DIR" && "$PY" report.py ingest "$RUN") >"$RUN/report.md" || { BENCH_KEEP_RUN=1; die "report failed; raw results kept in $RUN"; }
cat "$RUN/report.md"
[[ "${BENCH_NO_RESULTS:-0}" == 1 ]] || append_results "$RUN/report.md"
