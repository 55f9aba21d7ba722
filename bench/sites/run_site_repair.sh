#!/usr/bin/env bash
# Repair pass over many objects on three sites (issue 9, "Benchmark": 100,000 objects, wall time
# and objects/s), and the NameNode files those objects leave on an HDFS site.
#
# One command: bench/sites/run_site_repair.sh
#   - small Part-10 objects (~2.2 KB: the C-FIND catalog's headers with 8x8 pixels; catalog.py
#     + the cargo example gen_part10, written once under $SITES_WORKDIR and reused);
#   - for each kind in SITE_REPAIR_KINDS: three sites (file: three local directories; hdfs: three
#     MiniDFSCluster sites in WAN namespaces with unshaped links, needs root), `mifas import` of all
#     objects with ack "all" (every object on every site), then, server stopped:
#       `mifas repair --sha256-sample 0`   sizes of every copy only
#       `mifas repair`                     the default sample (storage.repair_sha256_sample, 0.01)
#       (file only) the same default pass after one pack file of site c was deleted: what a lost
#       disk costs, and every copy must come back (repaired = missing)
#     each timed from process start to exit (includes opening the index); mifas prints its own
#     elapsed_ms for the pass itself;
#   - hdfs: files, directories and blocks under /mifas on site a after the import (WebHDFS, JMX);
#   - prints the report and puts it into bench/RESULTS.md.
# Knobs:
#   SITES_WORKDIR (/tmp/mifas-sites)  SITE_REPAIR_PATIENTS (1000 = 100,000 objects; 100 per patient)
#   SITE_REPAIR_KINDS (default "file hdfs")  SITE_NO_RESULTS=1  SITE_KEEP_RUN=1  SITE_QUIET_WAIT (300)
#   MIFAS_BIN  GEN_BIN (default target/release/examples/gen_part10, built if missing)  BENCH_PYTHON
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z "${BENCH_PYTHON:-}" && ! -x "$HERE/../../.venv/bin/python" && -x /work/venv/bin/python ]]; then
  export BENCH_PYTHON=/work/venv/bin/python   # this machine's shared venv
fi
source "$HERE/../lib.sh"
source "$HERE/sitelib.sh"
TAG=site-repair
WORKDIR="${SITES_WORKDIR:-/tmp/mifas-sites}"
PATIENTS="${SITE_REPAIR_PATIENTS:-1000}"
N=$((PATIENTS * 100))
KINDS="${SITE_REPAIR_KINDS:-file hdfs}"
QUIET_WAIT="${SITE_QUIET_WAIT:-300}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
GEN_BIN="${GEN_BIN:-$REPO/target/release/examples/gen_part10}"
CATALOG="$WORKDIR/repair-catalog-$PATIENTS"
FILES="$WORKDIR/repair-files-$PATIENTS"

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
NOTES="$RUN/notes.txt"; RESULTS="$RUN/results.tsv"
: >"$NOTES"; : >"$RESULTS"
trap site_cleanup EXIT
trap 'exit 130' INT TERM

timed_repair() {  # kind label cfg data [repair args...]: one pass, one results row
  local kind=$1 label=$2 cfg=$3 d=$4 t0 s out rc=0 copies rate sample; shift 4
  sync
  t0=$(now)
  "$MIFAS_BIN" repair --config "$cfg" --data-dir "$d" "$@" >"$RUN/$kind-$label.txt" 2>>"$RUN/$kind-repair.log" &
  local rpid=$!; rss_guard "$rpid" "repair"
  wait "$rpid" || rc=$?
  s=$(secs "$t0" "$(now)")
  out=$(tr '\n' ' ' <"$RUN/$kind-$label.txt" | tr -s ' ')
  copies=$(awk '/^site /{s += $4} END {print s + 0}' "$RUN/$kind-$label.txt")
  rate=$(python3 -c "print(f'{$copies / $s:.0f}')")
  sample=$(sed -n 's/^--sha256-sample \(.*\)/\1/p' <<<"${*:-}"); [[ -n "$sample" ]] || sample="default (0.01)"
  [[ $rc == 0 ]] || note "$kind $label: mifas repair exited $rc: $out"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind: $label" "$sample" "$s" "$copies" "$rate" "$out" >>"$RESULTS"
  log "$kind $label: ${s}s, $copies copies checked = $rate copies/s; $out"
}

run_kind() {  # file|hdfs
  local kind=$1 d="$RUN/$1" cfg="$RUN/$1/mifas.toml" t0 s imported
  mkdir -p "$d"
  if [[ $kind == file ]]; then
    "${SITES_PY[@]}" config --file-sites "$d/sites" --data-dir "$d/data" --out "$cfg" --ack all
  else
    wan_up none none none
    sites_up "$RUN/hdfs" --sites 3 --datanodes 1 --replication 1
    site_config "$cfg" "$d/data" --ack all
  fi
  log "$kind: importing $N objects onto three sites (ack all)"
  # One `mifas import` per folder of 10,000 files (gen_part10's f000, f001, ...), each a new
  # process: an import onto HDFS sites keeps ~270 KB per small object in memory until it exits
  # (the pack writer's tail holds each object's 1 MiB copy buffer; 100,000 objects in one
  # process reached 21 GB), so one process for all of them cannot finish on this machine.
  local ipid rc=0 f peaks=""
  imported=0; t0=$(now)
  for f in "$FILES"/f*; do
    rc=0
    "$MIFAS_BIN" import --config "$cfg" --data-dir "$d/data" "$f" >"$d/import.txt" 2>>"$d/import.log" &
    ipid=$!; rss_guard "$ipid" "import-$kind"
    wait "$ipid" || rc=$?
    sleep 1.1  # the guard's last sample lands in its file
    peaks="$peaks $(awk '{print int($2 / 1024)}' "$RUN/rss-import-$kind.txt" 2>/dev/null)"
    if [[ $rc != 0 ]]; then
      SITE_KEEP_RUN=1
      die "$kind: mifas import of $f failed (exit $rc; $(cat "$RUN/rss-import-$kind.txt" 2>/dev/null)): $(grep -v ' WARN ' "$d/import.log" | tail -3)"
    fi
    imported=$((imported + $(sed -n 's/^imported: //p' "$d/import.txt")))
  done
  s=$(secs "$t0" "$(now)")
  envset "import_peak_rss_mb_$kind" "per import process (10,000 objects each):$peaks"
  [[ "$imported" == "$N" ]] || note "$kind: mifas import says imported: $imported, expected $N"
  envset "import_$kind" "$imported objects in ${s}s ($(python3 -c "print(f'{$N / $s:.0f}')") objects/s), ack all on three sites"
  log "$kind: imported $imported in ${s}s"
  wait_quiet "$kind repair passes"
  timed_repair "$kind" "sizes only" "$cfg" "$d/data" --sha256-sample 0
  timed_repair "$kind" "default sample" "$cfg" "$d/data"
  if [[ $kind == file ]]; then
    local pack; pack=$(find "$d/sites/c" -type f | sort | head -1)
    if [[ -n "$pack" ]]; then
      rm -f "$pack"
      timed_repair "$kind" "after losing pack $(basename "$pack") of site c" "$cfg" "$d/data"
    fi
  else
    envset "namenode_after_import" "site a, under /mifas: $("${SITES_PY[@]}" count --sites-json "$SITES_JSON" --site a --path /mifas)"
    sites_down
    "$WAN" down >>"$RUN/wan.log" 2>&1; WAN_UP=0
  fi
  envset "data_$kind" "index $(du -sh "$d/data/index" | cut -f1), sites $(du -sh "$d/sites" 2>/dev/null | cut -f1)"
  rm -rf "$d/data" "$d/sites"
}

# ---- main ----------------------------------------------------------------------------------------
[[ -x "$MIFAS_BIN" ]] || die "$MIFAS_BIN missing (cargo build --release)"
if [[ ! -s "$CATALOG/series.tsv" ]]; then
  log "catalog $CATALOG ($PATIENTS patients)"
  "$PY" "$BENCH_DIR/find/catalog.py" "$CATALOG" --patients "$PATIENTS" --seed 9 >&2
fi
if [[ ! -f "$FILES.complete" ]]; then
  if [[ ! -x "$GEN_BIN" ]]; then (cd "$REPO" && cargo build --release --example gen_part10 2>&1 | tail -3) >&2; fi
  rm -rf "$FILES"
  log "writing $N Part-10 files into $FILES"
  "$GEN_BIN" "$CATALOG" "$FILES" --folder-size 10000 --jobs 2 >"$RUN/gen.txt"
  got=$(sed -n 's/^files: //p' "$RUN/gen.txt")
  [[ "$got" == "$N" ]] || die "gen_part10 wrote $got files, expected $N"
  touch "$FILES.complete"
fi
envset mifas_bin "$(bin_info "$MIFAS_BIN")"; MIFAS_BIN=$(snapshot_bin "$MIFAS_BIN")
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"; envset disk "$(disk_of "$WORKDIR")"
envset load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
envset objects "$N"
envset object_files "$N Part-10 files, $(du -sb "$FILES" | cut -f1) bytes in all (gen_part10: catalog headers, 8x8 16-bit pixels)"
envset sites "three sites per kind, ack all; file = three directories on the same disk; hdfs = three MiniDFSCluster sites (1 namenode + 1 datanode, replication 1) in network namespaces, unshaped veth links"
envset copies "a pass checks every copy: 3 sites x $N objects; copies/s below = copies checked / wall seconds"
for k in $KINDS; do run_kind "$k"; done
"$PY" "$HERE/report_sites.py" repair "$RUN" >"$RUN/report.md" || { SITE_KEEP_RUN=1; die "report failed; raw results kept in $RUN"; }
cat "$RUN/report.md"
[[ "${SITE_NO_RESULTS:-0}" == 1 ]] || append_results "$RUN/report.md"
