#!/usr/bin/env bash
# MIFAS ingest benchmark (issue 2, "Benchmark").
#
# One command: bench/run_ingest.sh
#   - generates the corpus (1000 CT instances 512x512x16-bit, ~0.5 MB) and one
#     1000-frame multi-frame instance (~524 MB) under $BENCH_WORKDIR if missing;
#   - sends the corpus with DCMTK /usr/bin/storescu (TCP_NODELAY=1) over 1
#     association and over 4 parallel associations (4 storescu processes, one per
#     quarter of the corpus) into MIFAS, DCMTK storescp and Orthanc, each started
#     fresh on an empty temporary data dir for every measurement;
#   - times a raw "write + fsync + rename" loop (and the same + directory fsync)
#     of the same sizes on the same disk;
#   - measures the peak RSS (VmHWM) of MIFAS (and Orthanc, storescp for context)
#     while receiving the multi-frame instance;
#   - prints a table and appends a dated section to bench/RESULTS.md.
#
# Environment knobs:
#   BENCH_WORKDIR   where corpus and run data live (default /tmp/mifas-bench; same
#                   disk as the repository here). Corpus is kept for reuse, run
#                   data (server dirs) is always removed. BENCH_CLEAN=1 also
#                   removes the corpus at exit.
#   BENCH_REPEATS   measurements per configuration (default 5; the table shows the
#                   median and min-max). Targets are interleaved in each repeat.
#   BENCH_TARGETS   subset of "raw storescp orthanc mifas" (default: all; mifas is
#                   skipped with a note if the binary does not answer C-ECHO).
#   BENCH_QUIET_WAIT  seconds to wait at start until no rustc/cargo/cc runs and
#                   the CPUs are >= 85% idle (default 900); a compiler seen at
#                   the start or end of a measurement is reported.
#   BENCH_SKIP_RSS=1  skip the multi-frame RSS measurement.
#   BENCH_NO_RESULTS=1  do not touch bench/RESULTS.md.
#   MIFAS_BIN       default target/release/mifas (not built by this script).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
REPO="$(cd "$HERE/.." && pwd)"
WORKDIR="${BENCH_WORKDIR:-/tmp/mifas-bench}"
REPEATS="${BENCH_REPEATS:-5}"
TARGETS="${BENCH_TARGETS:-raw storescp orthanc mifas}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
COUNT=1000
PARTS=4
CORPUS="$WORKDIR/corpus/ct"
BIG="$WORKDIR/corpus/big.dcm"

STORESCU=/usr/bin/storescu
STORESCP=/usr/bin/storescp
ECHOSCU=/usr/bin/echoscu
ORTHANC=/usr/sbin/Orthanc
export TCP_NODELAY=1

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
RESULTS="$RUN/results.tsv"   # target mode repeat count seconds rate stored note busy server_cpu_s
RSSFILE="$RUN/rss.tsv"       # server baseline_kb hwm_kb stored_bytes note
NOTES="$RUN/notes.txt"
: >"$RESULTS"; : >"$RSSFILE"; : >"$NOTES"
SERVER_PID=""
ALL_PIDS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cleanup() {
  local rc=$?
  stop_all_pids
  if [[ -n "${BENCH_KEEP_RUN:-}" ]]; then
    log "run data kept in $RUN"
  else
    rm -rf "$RUN"
  fi
  if [[ "${BENCH_CLEAN:-0}" == 1 ]]; then rm -rf "$WORKDIR/corpus"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# other CPU-heavy work (a cargo build) spoils the figures: report it
BUSY=0
busy_check() { if busy; then BUSY=1; fi; }
# percentage of CPU time idle over 2 s
wait_quiet() {
  local max=${BENCH_QUIET_WAIT:-900} t=0 idle="?"
  while ((t < max)); do
    idle=$(cpu_idle); t=$((t + 2))
    if ! busy && ((idle >= 85)); then return 0; fi
    ((t % 60 < 2)) && log "machine busy (compiler running or CPU idle ${idle}% < 85%), waiting ($t s)"
    sleep 3; t=$((t + 3))
  done
  ((max == 0)) && return 0
  note "machine still busy after ${max} s (compiler or CPU idle ${idle}%); measuring anyway"
}
# wait until a C-ECHO to AEC@PORT succeeds (bounded), while SERVER_PID lives
wait_echo() {
  local aec=$1 port=$2 tries=${3:-100}
  for ((i = 0; i < tries; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
    if "$ECHOSCU" -to 2 -ta 2 -aet BENCH -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

stop_server() {
  [[ -z "$SERVER_PID" ]] && return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      note "$SERVER_NAME (pid $SERVER_PID) did not exit 10 s after SIGTERM; killed"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  wait "$SERVER_PID" 2>/dev/null && SERVER_RC=0 || SERVER_RC=$?
  SERVER_PID=""
}

# ---- servers: each sets SERVER_NAME SERVER_PID PORT AEC DATA -----------------

start_storescp() {  # $1 = extra option (e.g. --fork) or empty
  SERVER_NAME="storescp${1:+ $1}"
  DATA="$(mktemp -d "$RUN/storescp.XXXX")"
  PORT=$(free_port); AEC=STORESCP
  # default options, output directory only (single-process unless --fork)
  "$STORESCP" ${1:-} -od "$DATA" "$PORT" >"$DATA.log" 2>&1 &
  SERVER_PID=$!; ALL_PIDS+=("$SERVER_PID")
  wait_echo "$AEC" "$PORT" || { cat "$DATA.log" >&2; return 1; }
}

start_orthanc() {
  SERVER_NAME=orthanc
  DATA="$(mktemp -d "$RUN/orthanc.XXXX")"
  PORT=$(free_port); HTTP_PORT=$(free_port); AEC=ORTHANC
  mkdir -p "$DATA/storage" "$DATA/index"
  cat >"$DATA/config.json" <<EOF
{
  "Name": "mifas-bench",
  "StorageDirectory": "$DATA/storage",
  "IndexDirectory": "$DATA/index",
  "StorageCompression": false,
  "SyncStorageArea": true,
  "DicomServerEnabled": true,
  "DicomAet": "$AEC",
  "DicomPort": $PORT,
  "DicomCheckCalledAet": false,
  "HttpServerEnabled": true,
  "HttpPort": $HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": []
}
EOF
  "$ORTHANC" "$DATA/config.json" >"$DATA.log" 2>&1 &
  SERVER_PID=$!; ALL_PIDS+=("$SERVER_PID")
  wait_echo "$AEC" "$PORT" 300 || { tail -20 "$DATA.log" >&2; return 1; }
}

start_mifas() {
  SERVER_NAME=mifas
  DATA="$(mktemp -d "$RUN/mifas.XXXX")"
  AEC=MIFAS
  local http; http=$(free_port)
  "$MIFAS_BIN" serve --data-dir "$DATA/data" --dicom-port 0 --http-port "$http" --aet "$AEC" \
    >"$DATA.out" 2>"$DATA.log" &
  SERVER_PID=$!; ALL_PIDS+=("$SERVER_PID")
  PORT=""
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    PORT=$(sed -n 's/^MIFAS READY dicom=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$DATA.out" | head -1)
    [[ -n "$PORT" ]] && break
    sleep 0.1
  done
  if [[ -z "$PORT" ]]; then
    log "mifas did not print 'MIFAS READY' (stdout: $(head -c 300 "$DATA.out"); stderr tail below)"
    tail -20 "$DATA.log" >&2
    return 1
  fi
  wait_echo "$AEC" "$PORT" 50
}

# number of instances the server holds after a run
stored_count() {
  case "$SERVER_NAME" in
    storescp*) find "$DATA" -type f | wc -l ;;
    orthanc) curl -s "http://127.0.0.1:$HTTP_PORT/statistics" |
               python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])' 2>/dev/null || echo "?" ;;
    mifas) find "$DATA/data/objects" -type f -name '*.dcm' 2>/dev/null | wc -l ;;
  esac
}

# ---- one measurement -------------------------------------------------------

# send_corpus MODE(1|4) LOGPREFIX ; sets SEND_SECS SEND_FAIL
send_corpus() {
  local mode=$1 lp=$2 t0 t1 pids=() rc
  SEND_FAIL=0
  t0=$(now)
  if [[ $mode == 1 ]]; then
    "$STORESCU" -aet BENCH -aec "$AEC" +sd +r 127.0.0.1 "$PORT" "$CORPUS" >"$lp.1.log" 2>&1 || SEND_FAIL=1
  else
    for ((p = 0; p < PARTS; p++)); do
      "$STORESCU" -aet BENCH -aec "$AEC" +sd +r 127.0.0.1 "$PORT" "$CORPUS/part$p" >"$lp.$p.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || SEND_FAIL=1; done
  fi
  t1=$(now)
  SEND_SECS=$(python3 -c "print(f'{$t1 - $t0:.3f}')")
  # storescu prints E:/W: lines for failed stores or non-success statuses
  if grep -hE '^(E|F): |Status: (Failed|Refused|Error)' "$lp".*.log >/dev/null 2>&1; then SEND_FAIL=1; fi
}

measure() {  # target mode repeat
  local target=$1 mode=$2 r=$3 stored note="" extra=""
  [[ $target == storescp-fork ]] && extra=--fork
  case "$target" in
    storescp|storescp-fork) start_storescp "$extra" ;;
    orthanc) start_orthanc ;;
    mifas) start_mifas ;;
  esac || { note "$target: server did not start (mode $mode, repeat $r)"; stop_server; return 1; }
  BUSY=0; busy_check
  local cpu0 cpu1
  cpu0=$(cpu_secs "$SERVER_PID")
  send_corpus "$mode" "$DATA.send"
  cpu1=$(cpu_secs "$SERVER_PID")
  busy_check
  local cpu; cpu=$(python3 -c "print(f'{$cpu1 - $cpu0:.2f}')" 2>/dev/null || echo "?")
  stored=$(stored_count)
  if [[ $SEND_FAIL != 0 ]]; then
    note="storescu-errors"
    note "$target ${mode}assoc r$r: storescu reported errors: $(grep -hE '^(E|F): ' "$DATA.send".*.log | sort | uniq -c | head -5 | tr '\n' ' ')"
  fi
  if [[ "$stored" != "$COUNT" ]]; then
    note="${note:+$note,}stored=$stored"
    note "$target ${mode}assoc r$r: server holds $stored instances, expected $COUNT"
  fi
  if [[ $target == mifas ]]; then
    local v
    if ! v=$(python3 "$HERE/verify_mifas.py" "$CORPUS" "$DATA/data/objects" --sample 20 2>&1); then
      note "mifas ${mode}assoc r$r: stored objects differ from the corpus: $(head -3 <<<"$v" | tr '\n' ' ')"
    fi
  fi
  stop_server
  if [[ $target == mifas ]]; then
    if [[ ${SERVER_RC:-0} != 0 ]]; then note "mifas exited with code $SERVER_RC after SIGTERM (expected 0)"; fi
    local st
    if st=$("$MIFAS_BIN" stats --data-dir "$DATA/data" 2>"$DATA.stats.err"); then
      local n; n=$(sed -n 's/^instances: //p' <<<"$st")
      if [[ "$n" != "$COUNT" ]]; then note "mifas ${mode}assoc r$r: 'mifas stats' says instances: $n"; fi
    else
      note "mifas stats failed: $(head -c 200 "$DATA.stats.err")"
    fi
  fi
  local rate; rate=$(python3 -c "print(f'{$COUNT / $SEND_SECS:.1f}')")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$mode" "$r" "$COUNT" "$SEND_SECS" "$rate" "$stored" "${note:--}" "$BUSY" "$cpu" >>"$RESULTS"
  log "$target ${mode} assoc (repeat $r): $COUNT in ${SEND_SECS}s = $rate inst/s (stored $stored, server CPU ${cpu}s)${note:+ [$note]}$([[ $BUSY == 1 ]] && echo ' [compiler running]')"
  rm -rf "$DATA"
}

measure_raw() {  # repeat
  local r=$1 variant d out n secs rate
  for variant in fsync dirsync; do
    d="$(mktemp -d "$RUN/raw.XXXX")"
    BUSY=0; busy_check
    if [[ $variant == dirsync ]]; then
      out=$(python3 "$HERE/raw_fsync.py" "$CORPUS" "$d" --dirsync)
    else
      out=$(python3 "$HERE/raw_fsync.py" "$CORPUS" "$d")
    fi
    read -r n secs rate <<<"$out"
    busy_check
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "raw-$variant" 1 "$r" "$n" "$secs" "$rate" "$n" - "$BUSY" - >>"$RESULTS"
    log "raw loop ($variant): $n files in ${secs}s = $rate files/s$([[ $BUSY == 1 ]] && echo ' [compiler running]')"
    rm -rf "$d"; sync
  done
}

# ---- peak RSS with one big multi-frame instance ------------------------------

# CPU seconds (user+sys, incl. reaped children) of a process
cpu_secs() {
  local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo "?"; return; }
  st=${st##*) }   # fields from 3 on (after "pid (comm) ")
  read -r -a f <<<"$st"
  python3 -c "import os; print(f'{(${f[11]} + ${f[12]} + ${f[13]} + ${f[14]}) / os.sysconf(\"SC_CLK_TCK\"):.2f}')"
}

kb_of() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }

measure_rss() {  # target
  local target=$1 base hwm bytes note=""
  case "$target" in
    storescp) start_storescp "" ;;
    orthanc) start_orthanc ;;
    mifas) start_mifas ;;
  esac || { note "$target: server did not start for RSS"; stop_server; return 1; }
  base=$(kb_of VmHWM "$SERVER_PID")
  "$STORESCU" -aet BENCH -aec "$AEC" 127.0.0.1 "$PORT" "$BIG" >"$DATA.big.log" 2>&1 || note="storescu-failed"
  if grep -qE '^(E|F): ' "$DATA.big.log"; then note="storescu-errors"; fi
  sleep 0.2
  hwm=$(kb_of VmHWM "$SERVER_PID" || echo "?")
  case "$target" in
    storescp) bytes=$(find "$DATA" -type f -printf '%s\n' | sort -n | tail -1) ;;
    orthanc) bytes=$(find "$DATA/storage" -type f -printf '%s\n' | sort -n | tail -1) ;;
    mifas) bytes=$(find "$DATA/data/objects" -type f -name '*.dcm' -printf '%s\n' 2>/dev/null | sort -n | tail -1) ;;
  esac
  [[ -z "$bytes" ]] && { bytes=0; note="${note:+$note,}not-stored"; }
  [[ -n "$note" ]] && note "RSS $target: $note ($(grep -hE '^(E|F): ' "$DATA.big.log" | head -3 | tr '\n' ' '))"
  printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$base" "$hwm" "$bytes" "${note:--}" >>"$RSSFILE"
  log "RSS $target: VmHWM before ${base} kB, after the ${bytes}-byte store ${hwm} kB${note:+ [$note]}"
  stop_server
  rm -rf "$DATA"
}

# ---- main --------------------------------------------------------------------

if [[ ! -f "$CORPUS.complete" ]]; then
  log "generating corpus ($COUNT CT instances) in $CORPUS"
  rm -rf "$CORPUS"
  python3 "$HERE/gen_corpus.py" "$CORPUS" --count "$COUNT" --parts "$PARTS"
fi
if [[ "${BENCH_SKIP_RSS:-0}" != 1 && ! -f "$BIG" ]]; then
  log "generating the 1000-frame instance in $BIG"
  python3 "$HERE/gen_multiframe.py" "$BIG" --frames 1000 >&2
fi

want() { [[ " $TARGETS " == *" $1 "* ]]; }

if want mifas; then
  if [[ -x "$MIFAS_BIN" ]]; then
    # snapshot the binary: a concurrent cargo build must not swap it mid-run
    cp "$MIFAS_BIN" "$RUN/mifas-bin"
    export BENCH_MIFAS_BIN_INFO="$(date -r "$MIFAS_BIN" '+built %Y-%m-%d %H:%M'), sha256 $(sha256sum "$RUN/mifas-bin" | cut -c1-12)"
    MIFAS_BIN="$RUN/mifas-bin"
  fi
  if [[ ! -x "$MIFAS_BIN" ]]; then
    note "mifas: $MIFAS_BIN missing (run cargo build --release); MIFAS skipped"
    TARGETS="${TARGETS/mifas/}"
  elif ! start_mifas; then
    note "mifas: binary does not serve (no READY line or no C-ECHO answer); MIFAS skipped"
    stop_server; TARGETS="${TARGETS/mifas/}"
  else
    stop_server; rm -rf "$DATA"
  fi
fi

wait_quiet
export BENCH_LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
log "run dir $RUN, repeats $REPEATS, targets: $TARGETS, load $BENCH_LOADAVG_START"
# flush dirty pages of corpus generation so they do not land in the first measurement
sync
# Order inside a repeat: the raw loops run right before MIFAS 1 assoc, the
# figure they are compared with. sync before every measurement so the dirty
# pages of the previous one (storescp does not fsync) are not flushed inside it.
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
  for t in mifas orthanc storescp; do
    if want "$t"; then measure_rss "$t" || true; fi
  done
fi

MIFAS_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"
if [[ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then MIFAS_REV="$MIFAS_REV+uncommitted"; fi
export BENCH_MIFAS_REV="$MIFAS_REV" BENCH_WORKDIR_USED="$WORKDIR" BENCH_REPEATS_USED="$REPEATS"
report_args=("$RESULTS" "$RSSFILE" "$NOTES")
if [[ "${BENCH_NO_RESULTS:-0}" != 1 ]]; then report_args+=(--results-md "$HERE/RESULTS.md"); fi
if ! python3 "$HERE/report.py" "${report_args[@]}"; then
  BENCH_KEEP_RUN=1; log "report failed; raw results kept in $RESULTS"; exit 1
fi
