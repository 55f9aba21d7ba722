#!/usr/bin/env bash
# MIFAS C-FIND benchmark (issue 3). One command: bench/find/run_find.sh
#   1. catalog (catalog.py): FIND_BIG_PATIENTS patients x 2 studies x 5 series x 10 instances
#      (default 10,000 -> 1,000,000 instances); the small set is its first FIND_SMALL_PATIENTS
#      patients (default 1,000 -> 100,000 instances);
#   2. bulk-indexes the big set with the cargo example `bulk_index` (the ingest path's index code,
#      no network, no object files): rates of the first and last 10k, index size on disk;
#   3. writes the small set as Part-10 files (cargo example `gen_part10`, cached under
#      $FIND_WORKDIR), imports them into a second MIFAS data dir with `mifas import` and stores them
#      into Orthanc with 4 parallel storescu;
#   4. serves both MIFAS data dirs next to Orthanc and runs find_driver.py: the same queries against
#      all three, interleaved, with pynetdicom and the raw client; answers checked against the catalog;
#   5. prints the report and puts it into bench/RESULTS.md.
# Knobs:
#   FIND_WORKDIR         catalogs, files, run data (default /tmp/mifas-find; the run dir is removed
#                        at exit unless FIND_KEEP_RUN=1; catalogs and files are kept for reuse)
#   FIND_BIG_PATIENTS / FIND_SMALL_PATIENTS   default 10000 / 1000;  FIND_SEED  catalog seed (3)
#   FIND_QUERIES         measured queries per type, server and client (default 120);  FIND_WARMUP (5)
#   FIND_LOOP_DELAY      pynetdicom DUL idle sleep in s (default 0.0001; pynetdicom's own is 0.001)
#   FIND_SKIP_ORTHANC=1  no Orthanc;  FIND_SKIP_SMALL=1  no small set at all (no files, import, Orthanc)
#   FIND_BATCH           bulk loader batch size (default 1000; the index is flushed after each)
#   FIND_QUIET_WAIT      seconds to wait for no compiler and >= 85 % idle CPUs (default 900)
#   FIND_NO_BUILD=1      do not `cargo build --release --bin mifas --example bulk_index --example
#                        gen_part10` (server and bulk loader must come from the same tree)
#   FIND_NO_RESULTS=1    leave bench/RESULTS.md alone;  MIFAS_BIN (default target/release/mifas)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TAG=find
HERE="$BENCH_DIR/find"
WORKDIR="${FIND_WORKDIR:-/tmp/mifas-find}"
BIG_P="${FIND_BIG_PATIENTS:-10000}"
SMALL_P="${FIND_SMALL_PATIENTS:-1000}"
SEED="${FIND_SEED:-3}"
QUIET_WAIT="${FIND_QUIET_WAIT:-900}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
EXAMPLES="$REPO/target/release/examples"
BIG_N=$((BIG_P * 100)) SMALL_N=$((SMALL_P * 100))
BIG_NAME="mifas-$("${HARNESS[@]}" human-count "$BIG_N")" SMALL_NAME="mifas-$("${HARNESS[@]}" human-count "$SMALL_N")"
ORTH_NAME="orthanc-$("${HARNESS[@]}" human-count "$SMALL_N")"

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; : >"$NOTES"
SIZES="$RUN/sizes.txt"
trap 'finish_run "${FIND_KEEP_RUN:-0}"' EXIT
trap 'exit 130' INT TERM
size() { printf '%s: %s\n' "$1" "$(du -sb "$2" | cut -f1)" >>"$SIZES"; }

log "run dir $RUN"
[[ -x "$MIFAS_BIN" ]] || die "MIFAS binary $MIFAS_BIN not found (cargo build --release)"
if [[ "${FIND_NO_BUILD:-0}" != 1 ]]; then
  log "building (cargo build --release --bin mifas --example bulk_index --example gen_part10)"
  (cd "$REPO" && cargo build --release --bin mifas --example bulk_index --example gen_part10 2>&1 | tail -3) >&2
fi
envset mifas_bin "git $(git_rev), $(bin_info "$MIFAS_BIN")"; envset bulk_bin "$(bin_info "$EXAMPLES/bulk_index")"
BIN=$(snapshot_bin "$MIFAS_BIN"); BULK=$(snapshot_bin "$EXAMPLES/bulk_index")
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset disk "$(disk_of "$WORKDIR")"
envset peers "$(orthanc_version) (Debian), pynetdicom $("$PY" -c 'import pynetdicom; print(pynetdicom.__version__)'), DCMTK $(dcmtk_version)"
envset seed "$SEED"; envset big_patients "$BIG_P"; envset small_patients "$SMALL_P"
envset big_instances "$BIG_N"; envset small_instances "$SMALL_N"
envset big_name "$BIG_NAME"; envset small_name "$SMALL_NAME"; envset orthanc_name "$ORTH_NAME"

# ---- 1. catalogs ---------------------------------------------------------------------------------
CAT_BIG="$WORKDIR/catalog-s$SEED-p$BIG_P" CAT_SMALL="$WORKDIR/catalog-s$SEED-p$SMALL_P"
for c in "$CAT_BIG:$BIG_P" "$CAT_SMALL:$SMALL_P"; do
  [[ -s "${c%%:*}/series.tsv" ]] || "$PY" "$HERE/catalog.py" "${c%%:*}" --patients "${c##*:}" --seed "$SEED" >&2
done

# ---- 2. bulk index (big set) ---------------------------------------------------------------------
wait_quiet "bulk index of $BIG_N instances"
envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"; envset other_procs "$(heavy_procs)"
log "bulk index: $BIG_N instances"
busy_check "bulk load start"
"$BULK" "$CAT_BIG" "$RUN/mifas-big" --batch "${FIND_BATCH:-1000}" --window 10000 --rates "$RUN/bulk_rates.tsv" >"$RUN/bulk.txt"
busy_check "bulk load end"
cat "$RUN/bulk.txt" >&2
[[ -z "$BUSY_SEEN" ]] || note "a compiler was running during the bulk load ($BUSY_SEEN): rates are noisy"
BUSY_SEEN=""
sync; size big_index_du_bytes "$RUN/mifas-big/index"

# ---- 3. small set: files, mifas import, Orthanc --------------------------------------------------
ORTH_PORT=""
if [[ "${FIND_SKIP_SMALL:-0}" != 1 ]]; then
  FILES="$WORKDIR/files-s$SEED-p$SMALL_P-part10"
  PART=$(((SMALL_N + 3) / 4))  # four folders f000..f003: one storescu each
  if [[ ! -f "$FILES.complete" ]]; then
    log "writing $SMALL_N Part-10 files under $FILES (gen_part10; cached for later runs)"
    rm -rf "$FILES"; "$EXAMPLES/gen_part10" "$CAT_SMALL" "$FILES" --folder-size "$PART" >&2 && touch "$FILES.complete"
  fi
  nfiles=$(find "$FILES" -name '*.dcm' | wc -l)
  [[ "$nfiles" == "$SMALL_N" ]] || note "files dir holds $nfiles files, expected $SMALL_N"
  envset file_size "$(find "$FILES/f000" -name '*.dcm' -printf '%s\n' | sort -n | awk '{a[NR]=$1} END{print a[1]"–"a[NR]}')"
  log "mifas import of $SMALL_N files"
  t0=$(now); irc=0
  "$BIN" import --data-dir "$RUN/mifas-small" "$FILES" >"$RUN/import.out" 2>"$RUN/import.log" || irc=$?
  s=$(secs "$t0" "$(now)")
  { grep -E '^(imported|duplicates|rejected): ' "$RUN/import.out" || true
    echo "seconds: $s"; echo "rate: $(python3 -c "print(f'{$SMALL_N / $s:.1f}')")"; } >"$RUN/import.txt"
  [[ $irc == 0 ]] || note "mifas import exited $irc: $(grep -m3 '^rejected ' "$RUN/import.out" | tr '\n' ' ')"
  size small_index_du_bytes "$RUN/mifas-small/index"; size small_objects_du_bytes "$RUN/mifas-small/objects"

  if [[ "${FIND_SKIP_ORTHANC:-0}" != 1 ]]; then
    # SyncStorageArea false: loading only, not measured against MIFAS; C-FIND from an AE that is
    # not in DicomModalities needs DicomAlwaysAllowFind
    start_orthanc "$RUN/orthanc" '"SyncStorageArea": false' '"DicomAlwaysAllowFind": true' || die "Orthanc did not start"
    log "storing $SMALL_N files into Orthanc (4 x storescu +sd +r)"
    t0=$(now); spids=(); failed=()
    for k in 0 1 2 3; do
      "$STORESCU" -aet FINDBENCH -aec ORTHANC +sd +r 127.0.0.1 "$ORTH_PORT" "$FILES/f00$k" >"$RUN/storescu.$k.log" 2>&1 &
      spids+=($!)
    done
    for k in 0 1 2 3; do wait "${spids[$k]}" || failed+=("$k"); done
    s=$(secs "$t0" "$(now)"); cnt=$(orthanc_count)
    # a storescu whose association was aborted leaves the rest of its folder unsent: send those
    # folders again, untimed (Orthanc keeps what it already has)
    for attempt in 1 2; do
      [[ "$cnt" == "$SMALL_N" || ${#failed[@]} == 0 ]] && break
      note "Orthanc holds $cnt of $SMALL_N after the load (storescu failed for part(s) ${failed[*]}); re-sending them (attempt $attempt, not timed)"
      retry=("${failed[@]}"); failed=()
      for k in "${retry[@]}"; do
        "$STORESCU" -aet FINDBENCH -aec ORTHANC +sd +r 127.0.0.1 "$ORTH_PORT" "$FILES/f00$k" >>"$RUN/storescu.$k.log" 2>&1 || failed+=("$k")
      done
      cnt=$(orthanc_count)
    done
    printf 'load_seconds: %s\nload_rate: %s\ncount_instances: %s\n' "$s" "$(python3 -c "print(f'{$SMALL_N / $s:.1f}')")" "$cnt" >"$RUN/orthanc.txt"
    [[ "$cnt" == "$SMALL_N" ]] || note "Orthanc holds $cnt instances, expected $SMALL_N"
    size orthanc_index_du_bytes "$RUN/orthanc/index"; size orthanc_storage_du_bytes "$RUN/orthanc/storage"
  fi
fi

# ---- 4. serve and query --------------------------------------------------------------------------
MIFAS_BIN=$BIN
start_mifas "$RUN/serve-big" --data-dir "$RUN/mifas-big" || die "MIFAS ($BIG_NAME) did not start"
BIG_PID=$MIFAS_PID
note "MIFAS $BIG_NAME printed READY after ${MIFAS_SECS} s (a data dir without object files: the object check reports every indexed instance as missing, as the contract says for a query-only data dir)"
TARGETS=(--target "$BIG_NAME" 127.0.0.1 "$MIFAS_PORT" MIFAS "$CAT_BIG")
if [[ "${FIND_SKIP_SMALL:-0}" != 1 ]]; then
  start_mifas "$RUN/serve-small" --data-dir "$RUN/mifas-small" || die "MIFAS ($SMALL_NAME) did not start"
  TARGETS+=(--target "$SMALL_NAME" 127.0.0.1 "$MIFAS_PORT" MIFAS "$CAT_SMALL")
  [[ -z "$ORTH_PORT" ]] || TARGETS+=(--target "$ORTH_NAME" 127.0.0.1 "$ORTH_PORT" ORTHANC "$CAT_SMALL")
fi
wait_quiet "C-FIND queries"
procs=$(heavy_procs); [[ -z "$procs" ]] || note "processes above 20 % CPU when the queries started: $procs"
busy_check "queries start"
"$PY" "$HERE/find_driver.py" --out "$RUN/driver.json" --queries "${FIND_QUERIES:-120}" --warmup "${FIND_WARMUP:-5}" \
  --seed "$SEED" --loop-delay "${FIND_LOOP_DELAY:-0.0001}" "${TARGETS[@]}" 2>"$RUN/driver.log" ||
  { tail -30 "$RUN/driver.log" >&2; die "driver failed"; }
busy_check "queries end"
[[ -z "$BUSY_SEEN" ]] || note "a compiler was running during the queries ($BUSY_SEEN): latencies are noisy"
for p in "${ALL_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || note "a server (pid $p) died during the run"; done
w=$(grep -hE ' (ERROR|WARN) ' "$RUN"/serve-*/log.txt | grep -vE 'has no object file|indexed instances without object files' | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -3 | tr -s ' ' | tr '\n' ';' || true)
[[ -z "$w" ]] || note "MIFAS warnings/errors other than missing objects: $w"
stop_all_pids

# ---- 5. report -----------------------------------------------------------------------------------
(cd "$BENCH_DIR" && "$PY" report.py find "$RUN") >"$RUN/report.md"
cp "$RUN/report.md" "$WORKDIR/report-$(date +%Y%m%d-%H%M).md"
cat "$RUN/report.md"
[[ "${FIND_NO_RESULTS:-0}" == 1 ]] || append_results "$RUN/report.md"
