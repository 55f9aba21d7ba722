#!/usr/bin/env bash
# MIFAS retrieve benchmark (issue 4, "Benchmark"): C-MOVE and C-GET of one 500-instance CT study,
# MIFAS vs Orthanc, same run, same destination.
#
# One command: bench/retrieve/run_retrieve.sh
#   - generates the study (RETRIEVE_COUNT CT instances of ~0.5 MB, one patient / study / 2 series;
#     `generate.py study`) under $RETRIEVE_WORKDIR if missing;
#   - starts ONE DCMTK storescp (`storescp -od DIR PORT`, default options) as the C-MOVE
#     destination "STORESCP" of both archives for the whole run; starts Orthanc and MIFAS on empty
#     data dirs, both knowing that destination, and loads the study into each with storescu;
#   - per repeat, interleaved (archive order alternating): C-MOVE (movescu -S -aem STORESCP) and
#     C-GET (getscu -S) from each archive, then the same files sent straight to the same storescp by
#     storescu and by the raw sender (harness.py rawstore: every instance pre-encoded in memory,
#     the bound of any C-MOVE into that storescp). Repeat 0 is an untimed warm-up. Before each:
#     destination emptied, `sync`, a wait for a quiet second;
#   - verifies every retrieve (final status Success, exactly the study's SOP Instance UIDs at the
#     destination, 3 sampled files equal to the source: verify_dest.py); records server,
#     destination and client CPU and the CPU other processes used meanwhile;
#   - optionally profiles MIFAS with perf (RETRIEVE_PERF=1); prints the report and puts it into
#     bench/RESULTS.md (method: RESULTS.md, "Method").
# Knobs:
#   RETRIEVE_WORKDIR     study and run data (default /tmp/mifas-retrieve); RETRIEVE_KEEP_RUN=1 keeps the run dir
#   RETRIEVE_COUNT       instances in the study (default 500);  RETRIEVE_REPEATS  timed repeats (default 5)
#   RETRIEVE_TARGETS     subset of "orthanc mifas storescu rawstore" (default all four)
#   RETRIEVE_OPS         subset of "move get" (default both)
#   RETRIEVE_QUIET_WAIT  seconds to wait at start for a quiet machine (default 120)
#   RETRIEVE_PAUSE_BUDGET  seconds in all to wait before single retrieves for a quiet second (default 180)
#   RETRIEVE_PERF=1      perf profile of MIFAS during one extra C-MOVE and C-GET
#   RETRIEVE_NO_RESULTS=1  leave RESULTS.md alone (also left alone when a check failed, unless
#                        RETRIEVE_RESULTS_ON_FAIL=1);  MIFAS_BIN (default target/release/mifas; snapshotted)
# Exit status: 0 when every retrieve was verified, 1 otherwise.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
TAG=retrieve
HERE="$BENCH_DIR/retrieve"
WORKDIR="${RETRIEVE_WORKDIR:-/tmp/mifas-retrieve}"
COUNT="${RETRIEVE_COUNT:-500}"
REPEATS="${RETRIEVE_REPEATS:-5}"
TARGETS="${RETRIEVE_TARGETS:-orthanc mifas storescu rawstore}"
OPS="${RETRIEVE_OPS:-move get}"
QUIET_WAIT="${RETRIEVE_QUIET_WAIT:-120}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
STUDY="$WORKDIR/study-$COUNT"
CLIENT_TIMEOUT=180   # seconds; a hung retrieve fails instead of blocking the run
CALLING=RETRBENCH     # our AE title (movescu, getscu, storescu)
DEST_AET=STORESCP     # the C-MOVE destination's AE title in both archives

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
RESULTS="$RUN/results.tsv"
NOTES="$RUN/notes.txt"
: >"$RESULTS"; : >"$NOTES"
FAILED=0
trap 'finish_run "${RETRIEVE_KEEP_RUN:-0}"' EXIT
trap 'exit 130' INT TERM
HZ=$(getconf CLK_TCK)
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }  # all CPUs, not idle/iowait
# before each retrieve: wait (at most 30 s each, RETRIEVE_PAUSE_BUDGET s in all) for no compiler and
# >= 85 % idle CPUs over one second: other people's work otherwise lands inside ~1 s measurements
PAUSE_LEFT=${RETRIEVE_PAUSE_BUDGET:-180}
pause_for_quiet() {
  local t=0
  while ((PAUSE_LEFT > 0 && t < 30)); do
    if ! busy && (($(idle_pct 1) >= 85)); then return 0; fi
    sleep 1; t=$((t + 2)); PAUSE_LEFT=$((PAUSE_LEFT - 2))
  done
}
load_study() {  # name aec port -> 0 when the storescu run reported no error
  local lg="$RUN/load-$1.log" t0; t0=$(now)
  if ! "$STORESCU" -aet "$CALLING" -aec "$2" +sd +r 127.0.0.1 "$3" "$STUDY" >"$lg" 2>&1; then
    note "$1: storescu load reported failure: $(grep -hE '^(E|F): ' "$lg" | head -3 | tr '\n' ' ')"
    return 1
  fi
  log "$1: study loaded in $(secs "$t0" "$(now)") s"
}

# ---- one measurement ---------------------------------------------------------------------------

# measure TARGET OP REPEAT ; appends a row to results.tsv
#   columns: target op repeat count seconds rate files final completed check server_cpu dest_cpu client_cpu
#            busy note other_load
measure() {
  local target=$1 op=$2 r=$3 out spid sport aec lg="$RUN/$1-$2-r$3"
  case "$target" in
    orthanc) spid=$ORTH_PID; sport=$ORTH_PORT; aec=ORTHANC ;;
    mifas) spid=$MIFAS_PID; sport=$MIFAS_PORT; aec=MIFAS ;;
    storescu|rawstore) spid=""; sport=$SCP_PORT; aec=$DEST_AET ;;
  esac
  if [[ $op == get ]]; then out="$RUN/get"; rm -rf "$out"; mkdir -p "$out"; else out="$DEST_DIR"; fi
  find "$DEST_DIR" -mindepth 1 -delete
  sync
  pause_for_quiet
  local busy0=0; busy && busy0=1
  local s0 d0 t0 t1 s1 d1 rc=0
  s0=$([[ -n "$spid" ]] && cpu_ticks "$spid" || echo "")
  d0=$(cpu_ticks "$SCP_PID")
  local m0 m1; m0=$(busy_ticks)
  t0=$(now)
  case "$op" in
    move)
      /usr/bin/time -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$MOVESCU" -v -S -aet "$CALLING" -aec "$aec" \
        -aem "$DEST_AET" -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY_UID" 127.0.0.1 "$sport" \
        >"$lg.log" 2>&1 || rc=$? ;;
    get)
      /usr/bin/time -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$GETSCU" -v -S -aet "$CALLING" -aec "$aec" \
        -od "$out" -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY_UID" 127.0.0.1 "$sport" \
        >"$lg.log" 2>&1 || rc=$? ;;
    store)
      if [[ $target == rawstore ]]; then
        /usr/bin/time -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "${HARNESS[@]}" rawstore --calling "$CALLING" \
          127.0.0.1 "$sport" "$aec" "$STUDY" >"$lg.log" 2>&1 || rc=$?
      else
        /usr/bin/time -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$STORESCU" -aet "$CALLING" -aec "$aec" \
          +sd +r 127.0.0.1 "$sport" "$STUDY" >"$lg.log" 2>&1 || rc=$?
      fi ;;
  esac
  t1=$(now)
  m1=$(busy_ticks)
  s1=$([[ -n "$spid" ]] && cpu_ticks "$spid" || echo "")
  d1=$(cpu_ticks "$SCP_PID")
  busy && busy0=1
  local seconds rate server_cpu dest_cpu client_cpu final completed files check note=""
  seconds=$(secs "$t0" "$t1")
  if [[ $target == rawstore ]]; then
    # its own timing: connect .. release (file reading and PDU encoding before it are not counted)
    seconds=$(awk 'NF == 3 && $1 ~ /^[0-9]+$/ {print $2}' "$lg.log" | tail -1)
    [[ -z "$seconds" ]] && seconds=$(secs "$t0" "$t1")
  fi
  rate=$(python3 -c "print(f'{$COUNT / $seconds:.1f}')")
  server_cpu=$([[ -n "$spid" ]] && tick_secs "$s0" "$s1" || echo "-")
  dest_cpu=$([[ $op == get ]] && echo "-" || tick_secs "$d0" "$d1")
  client_cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ {v = sprintf("%.2f", $1 + $2)} END {printf "%s", v}' "$lg.time" 2>/dev/null || true)
  [[ -z "$client_cpu" ]] && client_cpu="?"
  # CPU used by everything else on the machine during the retrieve (other people's tests, builds),
  # in CPUs (1.0 = one CPU fully busy on average): the machine-wide busy time minus server,
  # destination and client. Kernel work done in interrupt context may land on either side.
  local other
  other=$(python3 -c "
ours = sum(float(x) for x in '$server_cpu $dest_cpu $client_cpu'.split() if x not in ('-', '?'))
print(f'{max(0.0, ($m1 - $m0) / $HZ - ours) / $(secs "$t0" "$t1"):.2f}')" 2>/dev/null || echo "?")
  case "$op" in
    move)
      final=$(sed -n 's/^I: Received Final Move Response (\(.*\))$/\1/p' "$lg.log" | tail -1 || true)
      completed=$(grep -c '^I: Received Move Response [0-9]* (Pending)' "$lg.log" || true)
      # the final response's counts are printed only with -d; pending responses = completed
      # sub-operations for both archives (one pending response per sub-operation) -- informative
      ;;
    get)
      final=$(sed -n 's/^I: Received C-GET Response (\(.*\))$/\1/p' "$lg.log" | { grep -v '^Pending$' || true; } | tail -1)
      completed=$(sed -n 's/^I:   Number of Completed Suboperations : *\([0-9]*\)$/\1/p' "$lg.log" | tail -1 || true)
      ;;
    store)
      final=$( ((rc == 0)) && ! grep -qE '^(E|F): |Error' "$lg.log" && echo Success || echo Failed)
      completed="$COUNT"
      ;;
  esac
  [[ -z "$final" ]] && final="none"
  [[ -z "$completed" ]] && completed="?"
  files=$(find "$out" -type f | wc -l)
  if check=$("$PY" "$HERE/verify_dest.py" "$STUDY" "$out" --sample 3 --seed "$( [[ $r =~ ^[0-9]+$ ]] && echo "$r" || echo 7)" 2>&1); then
    check=ok
  else
    check="FAILED: $(head -c 300 <<<"$check" | tr '\n\t' '  ')"
  fi
  if ((rc != 0)); then note="client exit $rc$( ((rc == 124)) && echo ' (timeout)' || true)"; fi
  if [[ $final != Success ]]; then note="${note:+$note; }final status $final"; fi
  if [[ $op == get && "$completed" != "$COUNT" ]]; then note="${note:+$note; }completed $completed"; fi
  if [[ $check != ok ]]; then note="${note:+$note; }destination check $check"; fi
  if [[ -n "$spid" ]] && ! kill -0 "$spid" 2>/dev/null; then note="${note:+$note; }server died"; fi
  local errs; errs=$(grep -hE '^(E|F): ' "$lg.log" | head -2 | tr '\n' ' ' | cut -c1-200 || true)
  [[ -n "$note" && -n "$errs" ]] && note="$note; client: $errs"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "$op" "$r" "$COUNT" \
    "$seconds" "$rate" "$files" "$final" "$completed" "$([[ $check == ok ]] && echo ok || echo FAILED)" \
    "$server_cpu" "$dest_cpu" "$client_cpu" "$busy0" "${note:--}" "$other" >>"$RESULTS"
  log "$target $op r$r: $COUNT in ${seconds}s = $rate inst/s; files $files, final $final, check $check; CPU server ${server_cpu}s dest ${dest_cpu}s client ${client_cpu}s; other load ${other} CPUs$([[ $busy0 == 1 ]] && echo ' [compiler running]')"
  if [[ -n "$note" ]]; then
    FAILED=1
    note "$target $op repeat $r FAILED: $note"
  fi
}

# perf profile of MIFAS during one C-MOVE and one C-GET (not part of the figures)
profile_mifas() {
  command -v perf >/dev/null || { note "perf not installed: no profile"; return 0; }
  local op pp
  for op in $OPS; do
    perf record -F 499 --call-graph dwarf,32768 -p "$MIFAS_PID" -o "$RUN/perf-$op.data" >"$RUN/perf-$op.rec.log" 2>&1 &
    pp=$!; ALL_PIDS+=("$pp")
    sleep 0.5
    measure mifas "$op" perf
    kill -INT "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    # inclusive ("children") time of the frames that tell where the time goes: MIFAS functions,
    # dicom_ul's PDU writer, memcpy, the kernel's socket send and file read
    timeout 300 perf report -i "$RUN/perf-$op.data" --children --sort sym -g none --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | grep -E 'mifas::[a-z_]+::[a-z_:]*[a-z_]+(::\{\{closure\}\})?( \(inlined\))?$|dicom_ul::(pdu::writer::write_pdu|association::encode_pdu)$|memmove|memcpy|\[k\] (__sys_sendto|ksys_read|__sys_recvfrom)$' |
      grep -vE 'listener::|association::run|::serve' | head -16 >"$RUN/perf-$op.top.txt" || true
    timeout 300 perf report -i "$RUN/perf-$op.data" --no-children --sort dso -g none --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | head -6 >"$RUN/perf-$op.threads.txt" || true
    cp "$RUN/perf-$op.top.txt" "$WORKDIR/perf-$op-top-$(date +%Y%m%d-%H%M).txt"
  done
}

# ---- main ----------------------------------------------------------------------------------------
if [[ ! -f "$STUDY.complete" ]]; then
  log "generating the study ($COUNT CT instances) in $STUDY"
  rm -rf "$STUDY" "$STUDY.uids"; "$PY" "$BENCH_DIR/generate.py" study "$STUDY" --count "$COUNT"
fi
STUDY_UID=$(cat "$STUDY.study")
"$PY" "$HERE/verify_dest.py" "$STUDY" "$STUDY" --sample 0 >/dev/null  # builds STUDY.uids
want() { [[ " $TARGETS " == *" $1 "* ]]; }
envset date "$(date -u '+%Y-%m-%d %H:%M UTC')"; envset git "$(git_rev)"
envset machine "$(machine)"
envset disk "$(disk_of "$WORKDIR"): archives' storage, the storescp destination and the getscu output dir"
envset peers "DCMTK $(dcmtk_version); $(orthanc_version)"
envset study "$COUNT CT instances, $(find "$STUDY" -type f -printf '%s\n' | sort -n | awk '{a[NR]=$1} END{print (a[1]==a[NR] ? a[1] : a[1]"-"a[NR])}') bytes each, Explicit VR LE"
envset repeats "$REPEATS"
if want mifas; then
  if [[ -x "$MIFAS_BIN" ]]; then
    envset mifas_bin "$(bin_info "$MIFAS_BIN")"; MIFAS_BIN=$(snapshot_bin "$MIFAS_BIN")
  else
    note "mifas: $MIFAS_BIN missing (cargo build --release); MIFAS skipped"; TARGETS="${TARGETS/mifas/}"
  fi
fi

DEST_DIR="$RUN/dest"
start_storescp "$DEST_DIR" || die "storescp did not start"
log "destination: storescp -od $DEST_DIR $SCP_PORT (pid $SCP_PID)"
if want orthanc; then
  # C-MOVE/C-GET from an AE not in DicomModalities is refused by default: the caller is listed too
  if start_orthanc "$RUN/orthanc" '"DicomAlwaysAllowMove": true' '"DicomAlwaysAllowGet": true' \
      "\"DicomModalities\": {\"dest\": [\"$DEST_AET\", \"127.0.0.1\", $SCP_PORT], \"bench\": [\"$CALLING\", \"127.0.0.1\", $(free_port)]}" &&
      load_study orthanc ORTHANC "$ORTH_PORT"; then
    n=$(orthanc_count)
    [[ "$n" == "$COUNT" ]] || { note "Orthanc holds $n instances after the load, expected $COUNT"; FAILED=1; }
  else
    note "Orthanc did not start or load; skipped"; FAILED=1; TARGETS="${TARGETS/orthanc/}"
  fi
fi
if want mifas; then
  printf '[dicom]\naet = "MIFAS"\n\n[[remote_ae]]\naet = "%s"\nhost = "127.0.0.1"\nport = %s\n' "$DEST_AET" "$SCP_PORT" >"$RUN/mifas.toml"
  if start_mifas "$RUN/mifas" --config "$RUN/mifas.toml" --data-dir "$RUN/mifas/data" && load_study mifas MIFAS "$MIFAS_PORT"; then
    n=$(find "$RUN/mifas/data/objects" -type f -name '*.dcm' 2>/dev/null | wc -l)
    [[ "$n" == "$COUNT" ]] || { note "MIFAS holds $n object files after the load, expected $COUNT"; FAILED=1; }
  else
    note "MIFAS did not start or load ($(grep -m1 -iE 'error' "$RUN/mifas/log.txt" | cut -c1-160)); skipped"
    FAILED=1; TARGETS="${TARGETS/mifas/}"
  fi
fi

wait_quiet "retrieves"
envset load_at_start "$(cut -d' ' -f1-3 /proc/loadavg)"
procs=$(heavy_procs)
if [[ -n "$procs" ]]; then note "processes above 20 % CPU when the measurements started: $procs"; fi
sync
log "run dir $RUN; targets: $TARGETS; ops: $OPS; warm-up + $REPEATS repeats"
for ((r = 0; r <= REPEATS; r++)); do
  # alternate which archive goes first (ABBA): slow drifts of this VM hit both alike
  order="orthanc mifas"; ((r % 2 == 0)) && order="mifas orthanc"
  for op in $OPS; do
    for t in $order; do
      if want "$t"; then measure "$t" "$op" "$r"; fi
    done
  done
  for t in storescu rawstore; do
    if want "$t"; then measure "$t" store "$r"; fi
  done
done

if [[ "${RETRIEVE_PERF:-0}" == 1 ]] && want mifas; then profile_mifas; fi

for p in "${MIFAS_PID:-}" "${ORTH_PID:-}"; do
  if [[ -n "$p" ]] && ! kill -0 "$p" 2>/dev/null; then note "a server (pid $p) died during the run"; FAILED=1; fi
done
if want mifas; then
  w=$(grep -hE ' (ERROR|WARN) ' "$RUN/mifas/log.txt" | sed -E 's/^[^ ]+ +//' | cut -c1-200 | sort | uniq -c | sort -rn | head -3 | tr -s ' ' | tr '\n' ';' || true)
  [[ -z "$w" ]] || note "MIFAS warnings/errors in its log: $w"
fi
stop_all_pids
(cd "$BENCH_DIR" && "$PY" report.py retrieve "$RUN") >"$RUN/report.md"
cp "$RUN/report.md" "$WORKDIR/report-$(date +%Y%m%d-%H%M).md"
cp "$RESULTS" "$WORKDIR/results-$(date +%Y%m%d-%H%M).tsv"
cat "$RUN/report.md"
if [[ "${RETRIEVE_NO_RESULTS:-0}" != 1 ]]; then
  if [[ $FAILED == 0 || "${RETRIEVE_RESULTS_ON_FAIL:-0}" == 1 ]]; then append_results "$RUN/report.md"
  else log "a check failed: bench/RESULTS.md not touched (RETRIEVE_RESULTS_ON_FAIL=1 to add it anyway)"; fi
fi
exit $FAILED
