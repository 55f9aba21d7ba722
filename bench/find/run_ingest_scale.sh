#!/usr/bin/env bash
# MIFAS ingest-scale benchmark: the rate of the real ingest path at 10k and at 1,000,000 instances.
#
# One command: bench/find/run_ingest_scale.sh
#   1. catalog (bench/find/catalog.py, seed 3): SCALE_PATIENTS patients x 2 studies x 5 series x 10
#      instances (default 10,000 -> 1,000,000 instances, the big set of run_find.sh; the catalog is
#      shared with it under $FIND_WORKDIR, default /tmp/mifas-find, and made if missing);
#   2. Part-10 files, written once with the cargo example `gen_part10` (bench/find/gen_part10.rs:
#      the header bulk_index indexes + 8x8 16-bit pixels, ~1.8 KB per file) into $SCALE_WORKDIR,
#      in folders f000, f001, ... of SCALE_FOLDER_SIZE instances in catalog order (one
#      sub-folder per series inside, so the import walks them series by series); reused while
#      $SCALE_WORKDIR.complete matches the parameters;
#   3. `mifas import --jobs $SCALE_JOBS` (spool -> validate -> fsync -> group commit -> sled index,
#      the C-STORE pipeline without the network) into a fresh data dir, one invocation per chunk of
#      folders, so the rate is measured while the archive is small and again when it is full.
#      With 100 folders the chunks are [0] [1-9] [10] [11-49] [50-98] [99]: folder 0 is "the rate
#      at 10k", folder 10 the rate at 100k, folder 99 "the rate at 1M" (990k -> 1M); the others
#      only grow the archive (reported as context). With F folders: [0] [1..m-1] [m] [m+1..F/2-1]
#      [F/2..F-2] [F-1] with m = max(2, F/10), empty chunks left out. Before each chunk: `sync`
#      (no write-back of earlier data during a measurement) and a wait for a quiet machine; a
#      compiler seen during a chunk is reported. Any rejected file aborts the run.
#   4. `mifas stats` (must count every instance), index and object sizes on disk;
#   5. prints a markdown report (also saved next to $SCALE_WORKDIR as ingest-scale-<date>.md).
#
# Knobs:
#   SCALE_PATIENTS     patients (default 10000 -> 1,000,000 instances; 100 instances per patient)
#   SCALE_FOLDER_SIZE  instances per folder = per measured window (default 10000)
#   SCALE_JOBS         `mifas import --jobs` (default 16);  SCALE_GEN_JOBS  gen_part10 threads (nproc)
#   SCALE_WORKDIR      the generated files (default /tmp/mifas-scale/files-1m, files-<N>[-fs<S>]
#                      otherwise); the run dir is a mktemp dir next to it, kept if SCALE_KEEP=1
#   SCALE_CATALOG      catalog dir (default ${FIND_WORKDIR:-/tmp/mifas-find}/catalog-s3-p<PATIENTS>)
#   SCALE_SEED         catalog seed (default 3, as run_find.sh)
#   SCALE_QUIET_WAIT   seconds to wait before each chunk for a quiet machine (default 900; 0: none)
#   SCALE_NO_RESULTS   default 1 (report on stdout and saved next to the files); 0 also puts it
#                      into bench/RESULTS.md
#   MIFAS_BIN          default target/release/mifas (NOT built here; snapshotted)
#   GEN_BIN            default target/release/examples/gen_part10 (built if missing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TAG=scale
HERE="$BENCH_DIR/find"
QUIET_WAIT="${SCALE_QUIET_WAIT:-900}"
PATIENTS="${SCALE_PATIENTS:-10000}"
FS="${SCALE_FOLDER_SIZE:-10000}"
JOBS="${SCALE_JOBS:-16}"
SEED="${SCALE_SEED:-3}"
GEN_JOBS="${SCALE_GEN_JOBS:-$(nproc)}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
GEN_BIN="${GEN_BIN:-$REPO/target/release/examples/gen_part10}"
N=$((PATIENTS * 100))
NAME="$("${HARNESS[@]}" human-count "$N" | tr 'MK' 'mk')"
DEFAULT_FILES="/tmp/mifas-scale/files-$NAME"
[[ "$FS" != 10000 ]] && DEFAULT_FILES="$DEFAULT_FILES-fs$FS"
FILES="${SCALE_WORKDIR:-$DEFAULT_FILES}"
FILES="${FILES%/}"
CATALOG="${SCALE_CATALOG:-${FIND_WORKDIR:-/tmp/mifas-find}/catalog-s$SEED-p$PATIENTS}"
FOLDERS=$(((N + FS - 1) / FS))

((PATIENTS > 0 && FS > 0)) || die "SCALE_PATIENTS and SCALE_FOLDER_SIZE must be positive"
[[ -x "$MIFAS_BIN" ]] || die "MIFAS binary $MIFAS_BIN not found (cargo build --release --bin mifas)"
mkdir -p "$(dirname "$FILES")"
RUN="$(mktemp -d "$(dirname "$FILES")/run.XXXXXX")"
NOTES="$RUN/notes.txt"; : >"$NOTES"
CHUNKS="$RUN/chunks.tsv"
trap 'finish_run "${SCALE_KEEP:-0}"' EXIT
trap 'exit 130' INT TERM

# a watcher sampling every second during a chunk: one line per second in which a compiler existed
watch_start() {
  : >"$1"
  ( while :; do
      if busy; then printf '%s %s\n' "$(date +%T)" "$(grep -shxE "$COMPILERS" /proc/[0-9]*/comm | sort -u | tr '\n' ' ')" >>"$1"; fi
      sleep 1
    done ) &
  WATCH_PID=$!; ALL_PIDS+=("$WATCH_PID")
}
watch_stop() { kill "$WATCH_PID" 2>/dev/null || true; wait "$WATCH_PID" 2>/dev/null || true; WATCH_PID=""; }
folder() { printf '%s/f%03d' "$FILES" "$1"; }
folder_files() {  # $1 first folder, $2 last folder (inclusive): instances in them
  local a=$(( $1 * FS )) b=$(( ($2 + 1) * FS ))
  ((b > N)) && b=$N
  echo $((b - a))
}

# ---- 1. catalog --------------------------------------------------------------------------------
if [[ ! -s "$CATALOG/series.tsv" ]]; then
  log "catalog $CATALOG ($PATIENTS patients, seed $SEED)"
  "$PY" "$HERE/catalog.py" "$CATALOG" --patients "$PATIENTS" --seed "$SEED" >&2
fi
cat_n=$(( ($(wc -l <"$CATALOG/series.tsv") - 1) * 10 ))
((cat_n == N)) || die "catalog $CATALOG holds $cat_n instances, expected $N"

# ---- 2. files ----------------------------------------------------------------------------------
MARK="$FILES.complete"
WANT="catalog=$(cd "$CATALOG" && pwd) seed=$SEED patients=$PATIENTS instances=$N folder_size=$FS layout=series-subdirs"
if [[ -f "$MARK" && "$(head -1 "$MARK")" == "$WANT" ]]; then
  log "reusing the files under $FILES ($MARK)"
else
  if [[ -e "$FILES" ]]; then
    # only ever remove what gen_part10 writes: folders f000, f001, ...
    stray=$(find "$FILES" -mindepth 1 -maxdepth 1 ! \( -type d -name 'f[0-9][0-9][0-9]*' \) | head -3)
    [[ -z "$stray" ]] || die "$FILES holds other things than f### folders ($stray); not removing it"
    log "removing the incomplete or different file set $FILES"
    rm -rf "$FILES"; rm -f "$MARK"
  fi
  need_kb=$((N * 15))  # ~4 KiB per source file, then the data dir (below)
  free_kb=$(df -Pk "$(dirname "$FILES")" | awk 'NR==2{print $4}')
  ((free_kb > need_kb)) || die "$(dirname "$FILES") has $((free_kb / 1024)) MiB free, ~$((need_kb / 1024)) MiB needed (files + data dir)"
  if [[ ! -x "$GEN_BIN" ]]; then
    log "building gen_part10 (cargo build --release --example gen_part10)"
    (cd "$REPO" && cargo build --release --example gen_part10 2>&1 | tail -3) >&2
  fi
  log "writing $N Part-10 files into $FILES ($FOLDERS folders of $FS, $GEN_JOBS threads)"
  "$GEN_BIN" "$CATALOG" "$FILES" --folder-size "$FS" --jobs "$GEN_JOBS" >"$RUN/gen.txt"
  cat "$RUN/gen.txt" >&2
  got=$(sed -n 's/^files: //p' "$RUN/gen.txt")
  [[ "$got" == "$N" ]] || die "gen_part10 wrote $got files, expected $N"
  { echo "$WANT"; cat "$RUN/gen.txt"; } >"$MARK"
fi
nfiles=$(find "$FILES" -type f -name '*.dcm' | wc -l)
[[ "$nfiles" == "$N" ]] || die "$FILES holds $nfiles .dcm files, expected $N (remove $MARK to regenerate)"

# ---- chunk plan --------------------------------------------------------------------------------
LAST=$((FOLDERS - 1))
MID=$((FOLDERS / 10)); ((MID < 2)) && MID=2  # folder 1 would start where folder 0 ends
HALF=$((FOLDERS / 2)); ((HALF < MID + 1)) && HALF=$((MID + 1))
PLAN=()  # "first last role"
add_chunk() { (($1 <= $2)) && PLAN+=("$1 $2 $3") || true; }
if ((FOLDERS == 1)); then
  add_chunk 0 0 first
else
  add_chunk 0 0 first
  if ((MID < LAST)); then
    add_chunk 1 $((MID - 1)) context
    add_chunk "$MID" "$MID" middle
    add_chunk $((MID + 1)) $((HALF - 1)) context
    add_chunk "$HALF" $((LAST - 1)) context
  else
    add_chunk 1 $((LAST - 1)) context
  fi
  add_chunk "$LAST" "$LAST" last
fi
((MID < LAST)) || note "only $FOLDERS folder(s): no middle window$( ((FOLDERS == 1)) && echo ', first = last')"
log "chunks (folders): $(for c in "${PLAN[@]}"; do set -- $c; printf '[%s-%s] ' "$1" "$2"; done)"

# ---- environment --------------------------------------------------------------------------------
BIN="$RUN/mifas"; cp "$MIFAS_BIN" "$BIN"
DATA="$RUN/data"
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset disk "$(disk_of "$RUN")"
envset mifas_bin "$MIFAS_BIN, $(bin_info "$BIN")"
envset files "$FILES ($FOLDERS folders)"
envset file_bytes "$(find "$(folder 0)" -name '*.dcm' -printf '%s\n' | sort -n | awk '{a[NR]=$1; s+=$1} END{printf "%d–%d (mean %.0f)", a[1], a[NR], s/NR}')"
envset instances "$N"; envset folder_size "$FS"; envset jobs "$JOBS"

# ---- 3. import, chunk by chunk -----------------------------------------------------------------
need_kb=$((N * 10))  # data dir: ~4 KiB per object file + ~5 KiB of index per instance, with margin
free_kb=$(df -Pk "$RUN" | awk 'NR==2{print $4}')
((free_kb > need_kb)) || die "$RUN has $((free_kb / 1024)) MiB free, ~$((need_kb / 1024)) MiB needed for the data dir"
printf 'first\tlast\trole\tfiles\timported\tduplicates\trejected\tseconds\tfiles_per_second\twall\tuser\tsys\tmaxrss_kb\tcompiler\n' >"$CHUNKS"
T_ALL=$(date +%s)
for c in "${PLAN[@]}"; do
  set -- $c
  a=$1; b=$2; role=$3
  tag=$(printf 'f%03d-f%03d' "$a" "$b")
  expect=$(folder_files "$a" "$b")
  paths=(); for ((k = a; k <= b; k++)); do paths+=("$(folder "$k")"); done
  sync
  wait_quiet "chunk $tag"
  log "chunk $tag ($role): $expect files, instances $((a * FS)) -> $((a * FS + expect))"
  BUSY_SEEN=""
  busy_check start
  watch_start "$RUN/$tag.busy"
  set +e
  /usr/bin/time -f 'wall: %e\nuser: %U\nsys: %S\nmaxrss_kb: %M' -o "$RUN/$tag.time" \
    "$BIN" import --jobs "$JOBS" --data-dir "$DATA" "${paths[@]}" >"$RUN/$tag.out" 2>"$RUN/$tag.log"
  rc=$?
  set -e
  watch_stop
  busy_check end
  kv() { sed -n "s/^$1: //p" "$2" | head -1; }
  imported=$(kv imported "$RUN/$tag.out"); dups=$(kv duplicates "$RUN/$tag.out")
  rejected=$(kv rejected "$RUN/$tag.out"); secs=$(kv seconds "$RUN/$tag.out")
  fps=$(kv files_per_second "$RUN/$tag.out")
  if [[ $rc != 0 || -z "$rejected" || "$rejected" != 0 ]]; then
    grep -m5 '^rejected ' "$RUN/$tag.out" >&2 || true
    tail -5 "$RUN/$tag.log" >&2 || true
    die "chunk $tag: mifas import exited $rc, rejected ${rejected:-?} file(s) (output in $RUN/$tag.out; SCALE_KEEP=1 keeps it)"
  fi
  [[ "$imported" == "$expect" ]] || die "chunk $tag: imported $imported (duplicates $dups), expected $expect"
  compiler=""
  if [[ -n "$BUSY_SEEN" || -s "$RUN/$tag.busy" ]]; then
    compiler="$(wc -l <"$RUN/$tag.busy") s with $(cut -d' ' -f2- "$RUN/$tag.busy" | tr ' ' '\n' | sed '/^$/d' | sort -u | tr '\n' ' ' | sed 's/ $//')${BUSY_SEEN:+ (seen at: $BUSY_SEEN)}"
    note "chunk $tag: a compiler ran during the measurement ($compiler): its rate is noisy"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$b" "$role" "$expect" \
    "$imported" "$dups" "$rejected" "$secs" "$fps" "$(kv wall "$RUN/$tag.time")" \
    "$(kv user "$RUN/$tag.time")" "$(kv sys "$RUN/$tag.time")" "$(kv maxrss_kb "$RUN/$tag.time")" \
    "$compiler" >>"$CHUNKS"
  log "chunk $tag: $imported imported in $secs s = $fps files/s (process wall $(kv wall "$RUN/$tag.time") s)"
done
envset total_minutes "$(python3 -c "print(f'{($(date +%s) - $T_ALL) / 60:.1f}')")"

# ---- 4. after the import -----------------------------------------------------------------------
sync
"$BIN" stats --data-dir "$DATA" >"$RUN/stats.txt" 2>"$RUN/stats.log" || die "mifas stats failed: $(tail -3 "$RUN/stats.log")"
cat "$RUN/stats.txt" >&2
got=$(sed -n 's/^instances: //p' "$RUN/stats.txt")
[[ "$got" == "$N" ]] || note "mifas stats counts $got instances, expected $N"
{ printf 'index_bytes\t%s\n' "$(du -sb "$DATA/index" | cut -f1)"
  printf 'index_disk_bytes\t%s\n' "$(du -s --block-size=1 "$DATA/index" | cut -f1)"
  printf 'objects_bytes\t%s\n' "$(du -sb "$DATA/objects" | cut -f1)"
  printf 'objects_disk_bytes\t%s\n' "$(du -s --block-size=1 "$DATA/objects" | cut -f1)"
} >"$RUN/sizes.tsv"

# ---- 5. report ----------------------------------------------------------------------------------
(cd "$BENCH_DIR" && "$PY" report.py scale "$RUN") >"$RUN/report.md"
cp "$RUN/report.md" "$(dirname "$FILES")/ingest-scale-$(date +%Y%m%d-%H%M).md"
cat "$RUN/report.md"
[[ "${SCALE_NO_RESULTS:-1}" != 0 ]] || append_results "$RUN/report.md"
