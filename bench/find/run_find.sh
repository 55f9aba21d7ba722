#!/usr/bin/env bash
# MIFAS C-FIND benchmark (issue 3, "Benchmark").
#
# One command: bench/find/run_find.sh
#   1. catalog (bench/find/catalog.py): FIND_BIG_PATIENTS patients x 2 studies x 5 series x 10
#      instances (default 10,000 -> 1,000,000 instances); the small set is its first
#      FIND_SMALL_PATIENTS patients (default 1,000 -> 100,000 instances);
#   2. bulk-indexes the big set with the cargo example `bulk_index` (bench/find/bulk_index.rs: the
#      same index code as ingest, Index::apply + flush, no network, no object files), reporting the
#      rate of the first and the last 10k instances and the index size on disk;
#   3. writes the small set as Part-10 files (bench/find/gen_files.py, pydicom, 8x8 pixels; cached
#      under $FIND_WORKDIR), imports them into a second MIFAS data dir with `mifas import` and
#      stores them into Orthanc 1.10 (Debian) with 4 parallel DCMTK storescu;
#   4. serves both MIFAS data dirs (`mifas serve --dicom-port 0`, READY line) next to Orthanc and runs
#      bench/find/find_driver.py: the same C-FIND queries against all three, interleaved, with
#      pynetdicom and with a raw-socket client; answers checked against the catalog;
#   5. prints the report and appends it to bench/RESULTS.md (section "C-FIND — run of ...").
#
# Environment knobs:
#   FIND_WORKDIR         where catalogs, the generated files and run data live
#                        (default /tmp/mifas-find; run data under $FIND_WORKDIR/run.XXXX is removed
#                        at exit unless FIND_KEEP_RUN=1; catalogs and files are kept for reuse).
#   FIND_BIG_PATIENTS    patients of the big (bulk) set, default 10000 (1M instances).
#   FIND_SMALL_PATIENTS  patients of the small (files, Orthanc) set, default 1000 (100k instances).
#   FIND_SEED            catalog seed (default 3).
#   FIND_QUERIES         measured queries per type, server and client (default 120, >= 100).
#   FIND_WARMUP          warm-up queries per type, not counted (default 5).
#   FIND_LOOP_DELAY      pynetdicom DUL idle sleep in s (default 0.0001; pynetdicom's own is 0.001).
#   FIND_SKIP_ORTHANC=1  no Orthanc (and no comparison).
#   FIND_SKIP_SMALL=1    no small set at all (no files, no import, no Orthanc).
#   FIND_BATCH           bulk loader batch size (default 1000; the index is flushed after each).
#   FIND_QUIET_WAIT      seconds to wait before measuring until no rustc/cargo runs and the CPUs
#                        are >= 85 % idle (default 900); a compiler seen during a measurement is noted.
#   FIND_NO_BUILD=1      do not run `cargo build --release --bin mifas --example bulk_index` (the
#                        server and the bulk loader must come from the same tree: index format).
#   FIND_NO_RESULTS=1    do not touch bench/RESULTS.md (the report is still printed and saved).
#   MIFAS_BIN            default target/release/mifas (built as above unless FIND_NO_BUILD=1; the
#                        binaries are snapshotted into the run dir at the start).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
QUIET_WAIT="${FIND_QUIET_WAIT:-900}"
wait_quiet() { wait_quiet_for "$@"; }
REPO="$(cd "$HERE/../.." && pwd)"
WORKDIR="${FIND_WORKDIR:-/tmp/mifas-find}"
BIG_P="${FIND_BIG_PATIENTS:-10000}"
SMALL_P="${FIND_SMALL_PATIENTS:-1000}"
SEED="${FIND_SEED:-3}"
QUERIES="${FIND_QUERIES:-120}"
WARMUP="${FIND_WARMUP:-5}"
LOOP_DELAY="${FIND_LOOP_DELAY:-0.0001}"
BATCH="${FIND_BATCH:-1000}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
BULK_BIN_SRC="$REPO/target/release/examples/bulk_index"
STORESCU=/usr/bin/storescu
ECHOSCU=/usr/bin/echoscu
ORTHANC=/usr/sbin/Orthanc
export TCP_NODELAY=1   # DCMTK tools and Orthanc (DCMTK-based) read it: no Nagle on their sockets
PER=10                 # instances per series (catalog.py)
BIG_N=$((BIG_P * 100))
SMALL_N=$((SMALL_P * 100))
BIG_NAME=$( ((BIG_N >= 1000000 && BIG_N % 1000000 == 0)) && echo "mifas-$((BIG_N / 1000000))M" || echo "mifas-$((BIG_N / 1000))k")
SMALL_NAME="mifas-$((SMALL_N / 1000))k"
ORTH_NAME="orthanc-$((SMALL_N / 1000))k"

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; : >"$NOTES"
ENV="$RUN/env.txt"; : >"$ENV"
SIZES="$RUN/sizes.txt"; : >"$SIZES"
ALL_PIDS=()

log() { printf '[find %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
envset() { printf '%s: %s\n' "$1" "$2" >>"$ENV"; }

stop_pid() {  # $1 pid, $2 name
  local pid=$1
  [[ -z "$pid" ]] && return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      note "$2 (pid $pid) did not exit 30 s after SIGTERM; killed"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_all_pids
  if [[ "${FIND_KEEP_RUN:-0}" == 1 ]]; then
    log "run data kept in $RUN"
  else
    rm -rf "$RUN"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# other CPU-heavy work (a cargo build, another benchmark) spoils the figures: wait, then report it
BUSY_SEEN=""
busy_check() { if busy; then BUSY_SEEN="${BUSY_SEEN:+$BUSY_SEEN, }$1"; fi; }

wait_echo() {  # aec port pid tries
  local aec=$1 port=$2 pid=$3 tries=${4:-300}
  for ((i = 0; i < tries; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if "$ECHOSCU" -to 2 -ta 2 -aet FINDBENCH -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

start_mifas() {  # $1 data dir, $2 out prefix; sets MPID MPORT
  local http; http=$(free_port)
  "$BIN" serve --data-dir "$1" --dicom-port 0 --http-port "$http" >"$2.out" 2>"$2.log" &
  MPID=$!; ALL_PIDS+=("$MPID")
  MPORT=""
  local t0; t0=$(now)
  for ((i = 0; i < 6000; i++)); do  # up to 10 min (reconciliation of 1M index entries)
    if ! kill -0 "$MPID" 2>/dev/null; then break; fi
    MPORT=$(sed -n 's/^MIFAS READY dicom=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$2.out" | head -1)
    [[ -n "$MPORT" ]] && break
    sleep 0.1
  done
  if [[ -z "$MPORT" ]]; then tail -20 "$2.log" >&2; return 1; fi
  MSTART=$(secs "$t0" "$(now)")
}

# ---------------------------------------------------------------------------------------------
log "run dir $RUN"
[[ -x "$MIFAS_BIN" ]] || { echo "MIFAS binary $MIFAS_BIN not found (cargo build --release)" >&2; exit 2; }
if [[ "${FIND_NO_BUILD:-0}" != 1 ]]; then
  # server and bulk loader must share the index format: build both from the same tree
  log "building (cargo build --release --bin mifas --example bulk_index)"
  (cd "$REPO" && cargo build --release --bin mifas --example bulk_index 2>&1 | tail -3) >&2
fi
[[ -x "$BULK_BIN_SRC" ]] || { echo "bulk loader $BULK_BIN_SRC not found" >&2; exit 2; }
BIN="$RUN/mifas"; cp "$MIFAS_BIN" "$BIN"
BULK="$RUN/bulk_index"; cp "$BULK_BIN_SRC" "$BULK"

envset date "$(date '+%Y-%m-%d %H:%M %Z')"
envset machine "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r)"
envset disk "$(df -h "$WORKDIR" | awk 'NR==2{print $1" ("$2" total, "$4" free)"}') for $WORKDIR"
envset git "$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet -- src Cargo.toml || echo '+uncommitted')"
envset mifas_bin "built $(date -r "$MIFAS_BIN" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$BIN" | cut -c1-12)"
envset bulk_bin "built $(date -r "$BULK_BIN_SRC" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$BULK" | cut -c1-12)"
envset orthanc_version "$("$ORTHANC" --version 2>/dev/null | head -1 | sed 's#.*/##')"
envset pynetdicom "$(python3 -c 'import pynetdicom; print(pynetdicom.__version__)')"
envset pydicom "$(python3 -c 'import pydicom; print(pydicom.__version__)')"
envset dcmtk "$("$STORESCU" --version 2>/dev/null | head -1 | sed 's/^\$dcmtk: //; s/ \$$//')"
envset seed "$SEED"
envset big_patients "$BIG_P"; envset small_patients "$SMALL_P"
envset big_instances "$BIG_N"; envset small_instances "$SMALL_N"
envset big_name "$BIG_NAME"; envset small_name "$SMALL_NAME"; envset orthanc_name "$ORTH_NAME"

# ---- 1. catalogs -----------------------------------------------------------------------------
CAT_BIG="$WORKDIR/catalog-s$SEED-p$BIG_P"
CAT_SMALL="$WORKDIR/catalog-s$SEED-p$SMALL_P"
for c in "$CAT_BIG:$BIG_P" "$CAT_SMALL:$SMALL_P"; do
  d=${c%%:*}; n=${c##*:}
  if [[ ! -s "$d/series.tsv" ]]; then
    log "catalog $d"
    python3 "$HERE/catalog.py" "$d" --patients "$n" --seed "$SEED" >&2
  fi
done

# ---- 2. bulk index (big set) -----------------------------------------------------------------
wait_quiet "bulk index of $BIG_N instances"
envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
envset other_procs "$(heavy_procs)"
BIG_DATA="$RUN/mifas-big"
log "bulk index: $BIG_N instances into $BIG_DATA"
busy_check "bulk load start"
"$BULK" "$CAT_BIG" "$BIG_DATA" --batch "$BATCH" --window 10000 --rates "$RUN/bulk_rates.tsv" >"$RUN/bulk.txt"
busy_check "bulk load end"
cat "$RUN/bulk.txt" >&2
[[ -n "$BUSY_SEEN" ]] && note "a compiler (rustc/cargo/cc) was running during the bulk load ($BUSY_SEEN): rates are noisy"
BUSY_SEEN=""
sync
printf 'big_index_du_bytes: %s\n' "$(du -sb "$BIG_DATA/index" | cut -f1)" >>"$SIZES"

# ---- 3. small set: files, mifas import, Orthanc ---------------------------------------------
ORTH_PID=""; ORTH_PORT=""
if [[ "${FIND_SKIP_SMALL:-0}" != 1 ]]; then
  FILES="$WORKDIR/files-s$SEED-p$SMALL_P"
  if [[ ! -f "$FILES.complete" ]]; then
    log "writing $SMALL_N DICOM files under $FILES (pydicom; cached for later runs)"
    python3 "$HERE/gen_files.py" "$CAT_SMALL" "$FILES" --parts 4 --jobs "$(nproc)" >&2
  fi
  nfiles=$(find "$FILES" -name '*.dcm' | wc -l)
  [[ "$nfiles" == "$SMALL_N" ]] || note "files dir holds $nfiles files, expected $SMALL_N"
  envset file_size "$(find "$FILES/part0" -name '*.dcm' -printf '%s\n' | sort -n | awk '{a[NR]=$1} END{print a[1]"–"a[NR]}')"

  SMALL_DATA="$RUN/mifas-small"
  log "mifas import of $SMALL_N files into $SMALL_DATA"
  t0=$(now)
  set +e
  "$BIN" import --data-dir "$SMALL_DATA" "$FILES" >"$RUN/import.out" 2>"$RUN/import.log"
  irc=$?
  set -e
  t1=$(now)
  s=$(secs "$t0" "$t1")
  { grep -E '^(imported|duplicates|rejected): ' "$RUN/import.out" || true
    echo "seconds: $s"
    echo "rate: $(python3 -c "print(f'{$SMALL_N / $s:.1f}')")"
    echo "exit: $irc"; } >"$RUN/import.txt"
  cat "$RUN/import.txt" >&2
  [[ $irc == 0 ]] || note "mifas import exited $irc: $(grep -m3 '^rejected ' "$RUN/import.out" | tr '\n' ' ')"
  printf 'small_index_du_bytes: %s\n' "$(du -sb "$SMALL_DATA/index" | cut -f1)" >>"$SIZES"
  printf 'small_objects_du_bytes: %s\n' "$(du -sb "$SMALL_DATA/objects" | cut -f1)" >>"$SIZES"

  if [[ "${FIND_SKIP_ORTHANC:-0}" != 1 ]]; then
    OD="$RUN/orthanc"
    mkdir -p "$OD/storage" "$OD/index"
    ORTH_PORT=$(free_port); OHTTP=$(free_port)
    cat >"$OD/config.json" <<EOF
{
  "Name": "mifas-find-bench",
  "StorageDirectory": "$OD/storage",
  "IndexDirectory": "$OD/index",
  "StorageCompression": false,
  "SyncStorageArea": false,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomPort": $ORTH_PORT,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowFind": true,
  "HttpServerEnabled": true,
  "HttpPort": $OHTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": []
}
EOF
    "$ORTHANC" "$OD/config.json" >"$OD.log" 2>&1 &
    ORTH_PID=$!; ALL_PIDS+=("$ORTH_PID")
    wait_echo ORTHANC "$ORTH_PORT" "$ORTH_PID" || { tail -20 "$OD.log" >&2; echo "Orthanc did not start" >&2; exit 1; }
    log "storing $SMALL_N files into Orthanc (4 x storescu +sd +r)"
    t0=$(now)
    spids=()
    for k in 0 1 2 3; do
      "$STORESCU" -aet FINDBENCH -aec ORTHANC +sd +r 127.0.0.1 "$ORTH_PORT" "$FILES/part$k" \
        >"$RUN/storescu.$k.log" 2>&1 &
      spids+=($!); ALL_PIDS+=($!)
    done
    sfail=0; failed_parts=()
    for k in 0 1 2 3; do wait "${spids[$k]}" || { sfail=1; failed_parts+=("$k"); }; done
    t1=$(now)
    s=$(secs "$t0" "$t1")
    ocount() { curl -s "http://127.0.0.1:$OHTTP/statistics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])'; }
    cnt=$(ocount)
    # a storescu that failed (association aborted after a refused store) leaves the rest of its
    # folder unsent: send those folders again (Orthanc keeps the instances it already has)
    for attempt in 1 2; do
      [[ "$cnt" == "$SMALL_N" || ${#failed_parts[@]} == 0 ]] && break
      note "Orthanc holds $cnt of $SMALL_N after the load (storescu failed for part(s) ${failed_parts[*]}: $(grep -hE '^(E|F): ' "$RUN"/storescu.*.log | head -2 | tr '\n' ' '); Orthanc log: $(grep -m2 -E '^E' "$OD.log" | cut -c1-160 | tr '\n' ' ')); re-sending those parts (attempt $attempt, not timed)"
      retry=("${failed_parts[@]}"); failed_parts=()
      for k in "${retry[@]}"; do
        "$STORESCU" -aet FINDBENCH -aec ORTHANC +sd +r 127.0.0.1 "$ORTH_PORT" "$FILES/part$k" \
          >"$RUN/storescu.$k.retry$attempt.log" 2>&1 || failed_parts+=("$k")
      done
      cnt=$(ocount)
    done
    { echo "load_seconds: $s"; echo "load_rate: $(python3 -c "print(f'{$SMALL_N / $s:.1f}')")"
      echo "count_instances: $cnt"; } >"$RUN/orthanc.txt"
    cat "$RUN/orthanc.txt" >&2
    [[ $sfail == 0 ]] || note "storescu into Orthanc reported errors: $(grep -hE '^(E|F): ' "$RUN"/storescu.*.log | sort | uniq -c | head -3 | tr '\n' ' ')"
    [[ "$cnt" == "$SMALL_N" ]] || note "Orthanc holds $cnt instances, expected $SMALL_N"
    printf 'orthanc_index_du_bytes: %s\n' "$(du -sb "$OD/index" | cut -f1)" >>"$SIZES"
    printf 'orthanc_storage_du_bytes: %s\n' "$(du -sb "$OD/storage" | cut -f1)" >>"$SIZES"
  fi
fi

# ---- 4. serve and query ----------------------------------------------------------------------
log "starting MIFAS on the bulk index ($BIG_N instances)"
start_mifas "$BIG_DATA" "$RUN/serve-big" || { echo "MIFAS (big) did not start" >&2; exit 1; }
BIG_PID=$MPID; BIG_PORT=$MPORT
note "MIFAS $BIG_NAME printed READY after ${MSTART} s (this data dir has no object files: the server's object check reports all $BIG_N indexed instances as missing, as the contract says for a query-only data dir)"
TARGETS=(--target "$BIG_NAME" 127.0.0.1 "$BIG_PORT" MIFAS "$CAT_BIG")
if [[ "${FIND_SKIP_SMALL:-0}" != 1 ]]; then
  start_mifas "$SMALL_DATA" "$RUN/serve-small" || { echo "MIFAS (small) did not start" >&2; exit 1; }
  SMALL_PID=$MPID
  TARGETS+=(--target "$SMALL_NAME" 127.0.0.1 "$MPORT" MIFAS "$CAT_SMALL")
  if [[ -n "$ORTH_PORT" ]]; then
    TARGETS+=(--target "$ORTH_NAME" 127.0.0.1 "$ORTH_PORT" ORTHANC "$CAT_SMALL")
  fi
fi

wait_quiet "C-FIND queries"
envset load_queries "$(cut -d' ' -f1-3 /proc/loadavg)"
procs=$(heavy_procs)
[[ -n "$procs" ]] && note "processes above 20 % CPU when the queries started: $procs"
log "C-FIND driver: $QUERIES queries per type, ${#TARGETS[@]} args of targets"
busy_check "queries start"
python3 "$HERE/find_driver.py" --out "$RUN/driver.json" --queries "$QUERIES" --warmup "$WARMUP" \
  --seed "$SEED" --loop-delay "$LOOP_DELAY" "${TARGETS[@]}" 2>"$RUN/driver.log" || {
  tail -30 "$RUN/driver.log" >&2; echo "driver failed" >&2; exit 1; }
busy_check "queries end"
grep -v '^\[driver\]' "$RUN/driver.log" >&2 || true
[[ -n "$BUSY_SEEN" ]] && note "a compiler (rustc/cargo/cc) was running during the queries ($BUSY_SEEN): latencies are noisy"
for p in "$BIG_PID" "${SMALL_PID:-}"; do
  [[ -n "$p" ]] && ! kill -0 "$p" 2>/dev/null && note "a MIFAS server (pid $p) died during the run"
done
[[ -n "$ORTH_PID" ]] && ! kill -0 "$ORTH_PID" 2>/dev/null && note "Orthanc died during the run"
grep -hE ' (ERROR|WARN) ' "$RUN"/serve-*.log | grep -vE 'has no object file|indexed instances without object files' | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -5 >"$RUN/serve-warnings.txt" || true
if [[ -s "$RUN/serve-warnings.txt" ]]; then
  note "MIFAS warnings/errors other than missing objects: $(head -3 "$RUN/serve-warnings.txt" | tr -s ' ' | tr '\n' ';')"
fi

stop_pid "$BIG_PID" "MIFAS $BIG_NAME"
[[ -n "${SMALL_PID:-}" ]] && stop_pid "$SMALL_PID" "MIFAS $SMALL_NAME"
[[ -n "$ORTH_PID" ]] && stop_pid "$ORTH_PID" "Orthanc"

# ---- 5. report -------------------------------------------------------------------------------
python3 "$HERE/report.py" "$RUN" >"$RUN/report.md"
cp "$RUN/report.md" "$WORKDIR/report-$(date +%Y%m%d-%H%M).md"
cp "$RUN/driver.json" "$WORKDIR/driver-$(date +%Y%m%d-%H%M).json"
cat "$RUN/report.md"
if [[ "${FIND_NO_RESULTS:-0}" != 1 ]]; then
  { echo; cat "$RUN/report.md"; } >>"$REPO/bench/RESULTS.md"
  log "appended to bench/RESULTS.md"
fi
