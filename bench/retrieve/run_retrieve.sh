#!/usr/bin/env bash
# MIFAS retrieve benchmark (issue 4, "Benchmark"): C-MOVE and C-GET of one 500-instance CT study,
# MIFAS vs Orthanc, same run, same destination.
#
# One command: bench/retrieve/run_retrieve.sh
#   - generates the study (500 CT instances 512x512x16-bit, ~0.5 MB, one patient / one study /
#     2 series; gen_study.py) under $RETRIEVE_WORKDIR if missing;
#   - starts ONE DCMTK storescp (default options, `storescp -od DIR PORT`) as the C-MOVE
#     destination "STORESCP", used by both archives for the whole run;
#   - starts Orthanc (DicomModalities: dest = STORESCP at that port) and MIFAS ([[remote_ae]]
#     STORESCP at that port) on empty data dirs and loads the study into each with storescu;
#   - per repeat, interleaved: C-MOVE (movescu -S -aem STORESCP, study level) from Orthanc and
#     MIFAS; C-GET (getscu -S -od DIR) from Orthanc and MIFAS (which archive goes first alternates
#     from repeat to repeat); and, for context, the same 500
#     files sent straight to the same storescp by storescu and by rawstore.py (a minimal sender
#     with every instance pre-encoded in memory: the most one association can push into that
#     storescp, i.e. the bound for any archive's C-MOVE). Repeat 0 is an untimed warm-up (reported
#     separately). Time = client start to client exit. Before each: destination emptied, `sync`.
#   - verifies every retrieve: final status Success, completed sub-operations = 500, the
#     destination holds exactly the study's 500 SOP Instance UIDs, 3 sampled files equal the
#     source element by element (verify_dest.py). A retrieve that moved nothing FAILS the run.
#   - records server CPU (utime+stime of the server process, all threads), destination storescp
#     CPU and client CPU per retrieve;
#   - optionally profiles MIFAS with perf (RETRIEVE_PERF=1);
#   - prints a markdown report (report.py) and appends it to bench/RESULTS.md.
#
# Environment knobs:
#   RETRIEVE_WORKDIR     study and run data (default /tmp/mifas-retrieve; same disk as the repo).
#                        The study is kept for reuse; the run dir is removed at exit unless
#                        RETRIEVE_KEEP_RUN=1.
#   RETRIEVE_COUNT       instances in the study (default 500)
#   RETRIEVE_REPEATS     timed repeats (default 5: one retrieve takes ~1 s and varies by +-30 % on
#                        this 2-CPU VM, so 5 cost nothing; the table shows the median and min-max)
#   RETRIEVE_TARGETS     subset of "orthanc mifas storescu rawstore" (default all four; the last two
#                        are the destination alone: storescu -> storescp and rawstore.py -> storescp)
#   RETRIEVE_OPS         subset of "move get" (default both)
#   RETRIEVE_QUIET_WAIT  seconds to wait at start for no compiler and >= 85% idle CPUs (default 120)
#   RETRIEVE_PAUSE_BUDGET  seconds in all to wait before single retrieves for a quiet second (at
#                        most 30 s each; default 180). The CPU used by other processes during
#                        each retrieve is recorded ("other load") either way.
#   RETRIEVE_PERF=1      after the repeats, `perf record --call-graph dwarf` MIFAS during one extra
#                        C-MOVE and one C-GET; inclusive time of the telling frames and self time
#                        by shared object go into the run dir and the report.
#   RETRIEVE_NO_RESULTS=1  do not touch bench/RESULTS.md (also skipped when a check failed, unless
#                        RETRIEVE_RESULTS_ON_FAIL=1)
#   MIFAS_BIN            default target/release/mifas (not built by this script; snapshotted)
# Exit status: 0 when every retrieve was verified, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
REPO="$(cd "$HERE/../.." && pwd)"
WORKDIR="${RETRIEVE_WORKDIR:-/tmp/mifas-retrieve}"
COUNT="${RETRIEVE_COUNT:-500}"
REPEATS="${RETRIEVE_REPEATS:-5}"
TARGETS="${RETRIEVE_TARGETS:-orthanc mifas storescu rawstore}"
OPS="${RETRIEVE_OPS:-move get}"
MIFAS_BIN="${MIFAS_BIN:-$REPO/target/release/mifas}"
STUDY="$WORKDIR/study-$COUNT"
CLIENT_TIMEOUT=180   # seconds; a hung retrieve fails instead of blocking the run

STORESCU=/usr/bin/storescu
STORESCP=/usr/bin/storescp
ECHOSCU=/usr/bin/echoscu
MOVESCU=/usr/bin/movescu
GETSCU=/usr/bin/getscu
ORTHANC=/usr/sbin/Orthanc
TIME=/usr/bin/time
CALLING=RETRBENCH     # our AE title (movescu, getscu, storescu)
DEST_AET=STORESCP     # the C-MOVE destination's AE title in both archives
export TCP_NODELAY=1  # every DCMTK tool (and Orthanc, DCMTK inside) reads it

mkdir -p "$WORKDIR"
RUN="$(mktemp -d "$WORKDIR/run.XXXXXX")"
RESULTS="$RUN/results.tsv"
NOTES="$RUN/notes.txt"
ENV="$RUN/env.txt"
: >"$RESULTS"; : >"$NOTES"; : >"$ENV"
ALL_PIDS=()
FAILED=0

log() { printf '[retrieve %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
envset() { printf '%s: %s\n' "$1" "$2" >>"$ENV"; }

stop_pid() {  # pid name
  local pid=$1
  [[ -z "$pid" ]] && return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      note "$2 (pid $pid) did not exit 15 s after SIGTERM; killed"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  stop_all_pids
  if [[ "${RETRIEVE_KEEP_RUN:-0}" == 1 ]]; then
    log "run data kept in $RUN"
  else
    rm -rf "$RUN"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds (user+sys of all threads) of a live process, as an integer number of clock ticks
cpu_ticks() {
  local st; st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
  st=${st##*) }
  read -r -a f <<<"$st"
  echo $((f[11] + f[12]))
}
HZ=$(getconf CLK_TCK)
# busy (non-idle, non-iowait) ticks of the whole machine, all CPUs
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
tick_secs() {  # t0 t1 -> seconds, or "?" when a process was gone
  [[ -z "$1" || -z "$2" ]] && { echo "?"; return; }
  python3 -c "print(f'{($2 - $1) / $HZ:.2f}')"
}

wait_quiet() {
  local max=${RETRIEVE_QUIET_WAIT:-120} t=0 idle="?"
  while ((t < max)); do
    idle=$(cpu_idle); t=$((t + 2))
    if ! busy && ((idle >= 85)); then return 0; fi
    ((t % 60 < 5)) && log "machine busy (compiler/pytest running or CPU idle ${idle}% < 85%), waiting ($t s)"
    sleep 3; t=$((t + 3))
  done
  ((max == 0)) && return 0
  note "machine still busy after ${max} s (CPU idle ${idle}%: $(heavy_procs)); measured anyway"
}

# before each retrieve: wait (at most 30 s each, RETRIEVE_PAUSE_BUDGET s in all, default 180) until
# no compiler runs and the CPUs were >= 85 % idle over one second -- other people's work on a
# shared machine otherwise lands inside single ~1 s measurements
PAUSE_LEFT=${RETRIEVE_PAUSE_BUDGET:-180}
idle_1s() {
  local a b tot=0 i
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  for ((i = 1; i < ${#a[@]}; i++)); do tot=$((tot + b[i] - a[i])); done
  echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (tot > 0 ? tot : 1) ))
}
pause_for_quiet() {
  local t=0
  while ((PAUSE_LEFT > 0 && t < 30)); do
    if ! busy && (($(idle_1s) >= 85)); then return 0; fi
    sleep 1; t=$((t + 2)); PAUSE_LEFT=$((PAUSE_LEFT - 2))
  done
}

wait_echo() {  # aec port pid [tries]
  local aec=$1 port=$2 pid=$3 tries=${4:-300}
  for ((i = 0; i < tries; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if "$ECHOSCU" -to 2 -ta 2 -aet "$CALLING" -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  return 1
}

# ---- servers -----------------------------------------------------------------------------------

start_dest() {  # the C-MOVE destination, one for the whole run
  DEST_DIR="$RUN/dest"; mkdir -p "$DEST_DIR"
  DEST_PORT=$(free_port)
  "$STORESCP" -od "$DEST_DIR" "$DEST_PORT" >"$RUN/storescp.log" 2>&1 &
  DEST_PID=$!; ALL_PIDS+=("$DEST_PID")
  wait_echo "$DEST_AET" "$DEST_PORT" "$DEST_PID" || { cat "$RUN/storescp.log" >&2; return 1; }
}

start_orthanc() {
  local d="$RUN/orthanc"
  mkdir -p "$d/storage" "$d/index"
  ORTH_PORT=$(free_port); ORTH_HTTP=$(free_port)
  # C-MOVE/C-GET from an AE not in DicomModalities is refused by default: the caller is listed
  # (and DicomAlwaysAllowMove/Get set, Orthanc >= 1.9.7/1.10.0). SyncStorageArea does not matter
  # for reads; kept as in the ingest benchmark.
  cat >"$d/config.json" <<EOF
{
  "Name": "mifas-retrieve-bench",
  "StorageDirectory": "$d/storage",
  "IndexDirectory": "$d/index",
  "StorageCompression": false,
  "SyncStorageArea": true,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomPort": $ORTH_PORT,
  "DicomCheckCalledAet": false,
  "DicomAlwaysAllowMove": true,
  "DicomAlwaysAllowGet": true,
  "DicomModalities": {
    "dest": ["$DEST_AET", "127.0.0.1", $DEST_PORT],
    "bench": ["$CALLING", "127.0.0.1", $(free_port)]
  },
  "HttpServerEnabled": true,
  "HttpPort": $ORTH_HTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": []
}
EOF
  "$ORTHANC" "$d/config.json" >"$d.log" 2>&1 &
  ORTH_PID=$!; ALL_PIDS+=("$ORTH_PID")
  wait_echo ORTHANC "$ORTH_PORT" "$ORTH_PID" || { tail -20 "$d.log" >&2; return 1; }
}

start_mifas() {  # $1 = config file; sets MIFAS_PID MIFAS_PORT
  local d="$RUN/mifas" http; http=$(free_port)
  mkdir -p "$d"
  "$MIFAS_BIN" serve --config "$1" --data-dir "$d/data" --dicom-port 0 --http-port "$http" \
    >"$d/out.txt" 2>>"$d/log.txt" &
  MIFAS_PID=$!; ALL_PIDS+=("$MIFAS_PID")
  MIFAS_PORT=""
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$MIFAS_PID" 2>/dev/null; then break; fi
    MIFAS_PORT=$(sed -n 's/^MIFAS READY dicom=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$d/out.txt" | head -1)
    [[ -n "$MIFAS_PORT" ]] && break
    sleep 0.1
  done
  if [[ -z "$MIFAS_PORT" ]]; then
    log "mifas did not print 'MIFAS READY'; stderr tail:"; tail -5 "$d/log.txt" >&2
    wait "$MIFAS_PID" 2>/dev/null || true
    return 1
  fi
  wait_echo MIFAS "$MIFAS_PORT" "$MIFAS_PID" 50
}

load_study() {  # name aec port -> 0 when the storescu run reported no error
  local lg="$RUN/load-$1.log" t0 t1
  t0=$(now)
  if ! "$STORESCU" -aet "$CALLING" -aec "$2" +sd +r 127.0.0.1 "$3" "$STUDY" >"$lg" 2>&1; then
    note "$1: storescu load reported failure: $(grep -hE '^(E|F): ' "$lg" | head -3 | tr '\n' ' ')"
    return 1
  fi
  t1=$(now)
  log "$1: study loaded in $(secs "$t0" "$t1") s"
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
    storescu|rawstore) spid=""; sport=$DEST_PORT; aec=$DEST_AET ;;
  esac
  if [[ $op == get ]]; then out="$RUN/get"; rm -rf "$out"; mkdir -p "$out"; else out="$DEST_DIR"; fi
  find "$DEST_DIR" -mindepth 1 -delete
  sync
  pause_for_quiet
  local busy0=0; busy && busy0=1
  local s0 d0 t0 t1 s1 d1 rc=0
  s0=$([[ -n "$spid" ]] && cpu_ticks "$spid" || echo "")
  d0=$(cpu_ticks "$DEST_PID")
  local m0 m1; m0=$(busy_ticks)
  t0=$(now)
  case "$op" in
    move)
      "$TIME" -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$MOVESCU" -v -S -aet "$CALLING" -aec "$aec" \
        -aem "$DEST_AET" -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY_UID" 127.0.0.1 "$sport" \
        >"$lg.log" 2>&1 || rc=$? ;;
    get)
      "$TIME" -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$GETSCU" -v -S -aet "$CALLING" -aec "$aec" \
        -od "$out" -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$STUDY_UID" 127.0.0.1 "$sport" \
        >"$lg.log" 2>&1 || rc=$? ;;
    store)
      if [[ $target == rawstore ]]; then
        "$TIME" -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" python3 "$HERE/rawstore.py" --calling "$CALLING" \
          127.0.0.1 "$sport" "$aec" "$STUDY" >"$lg.log" 2>&1 || rc=$?
      else
        "$TIME" -o "$lg.time" -f '%U %S' timeout "$CLIENT_TIMEOUT" "$STORESCU" -aet "$CALLING" -aec "$aec" \
          +sd +r 127.0.0.1 "$sport" "$STUDY" >"$lg.log" 2>&1 || rc=$?
      fi ;;
  esac
  t1=$(now)
  m1=$(busy_ticks)
  s1=$([[ -n "$spid" ]] && cpu_ticks "$spid" || echo "")
  d1=$(cpu_ticks "$DEST_PID")
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
  if check=$(python3 "$HERE/verify_dest.py" "$STUDY" "$out" --sample 3 --seed "$( [[ $r =~ ^[0-9]+$ ]] && echo "$r" || echo 7)" 2>&1); then
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

# ---- main --------------------------------------------------------------------------------------

if [[ ! -f "$STUDY.complete" ]]; then
  log "generating the study ($COUNT CT instances) in $STUDY"
  rm -rf "$STUDY" "$STUDY.uids"
  python3 "$HERE/gen_study.py" "$STUDY" --count "$COUNT"
fi
STUDY_UID=$(cat "$STUDY.study")
python3 "$HERE/verify_dest.py" "$STUDY" "$STUDY" --sample 0 >/dev/null  # builds STUDY.uids

want() { [[ " $TARGETS " == *" $1 "* ]]; }

envset date "$(date '+%Y-%m-%d %H:%M %Z')"
envset machine "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(lscpu | sed -n 's/^Hypervisor vendor: *//p' | sed 's/^\(.\+\)$/\1 VM/')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r)"
envset disk "$(df -hT "$WORKDIR" | awk 'NR==2{print $1" ("$2", "$3" total, "$5" free)"}') for $WORKDIR: archives' storage, the storescp destination and the getscu output dir are all on it"
envset dcmtk "$("$STORESCU" --version 2>/dev/null | head -1 | sed 's/^\$dcmtk: //; s/ \$$//')"
envset orthanc "$("$ORTHANC" --version 2>/dev/null | head -1 | sed 's#.*/##')"
envset study "$COUNT CT instances, $(find "$STUDY" -type f -printf '%s\n' | sort -n | awk '{a[NR]=$1} END{print (a[1]==a[NR] ? a[1] : a[1]"-"a[NR])}') bytes each, Explicit VR LE, Study Instance UID $STUDY_UID"
envset repeats "$REPEATS"

if want mifas; then
  MIFAS_REV="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)"
  if [[ -n "$(git -C "$REPO" status --porcelain -- src Cargo.toml 2>/dev/null)" ]]; then MIFAS_REV="$MIFAS_REV+uncommitted"; fi
  if [[ -x "$MIFAS_BIN" ]]; then
    # snapshot the binary: a concurrent cargo build must not swap it mid-run
    envset mifas "git $MIFAS_REV (binary built $(date -r "$MIFAS_BIN" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$MIFAS_BIN" | cut -c1-12))"
    cp "$MIFAS_BIN" "$RUN/mifas-bin"; MIFAS_BIN="$RUN/mifas-bin"
  else
    note "mifas: $MIFAS_BIN missing (cargo build --release); MIFAS skipped"
    TARGETS="${TARGETS/mifas/}"
  fi
fi

start_dest || { echo "storescp did not start" >&2; exit 1; }
log "destination: storescp -od $DEST_DIR $DEST_PORT (pid $DEST_PID)"

if want orthanc; then
  if start_orthanc && load_study orthanc ORTHANC "$ORTH_PORT"; then
    n=$(curl -s "http://127.0.0.1:$ORTH_HTTP/statistics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])' 2>/dev/null || echo "?")
    [[ "$n" == "$COUNT" ]] || { note "Orthanc holds $n instances after the load, expected $COUNT"; FAILED=1; }
  else
    note "Orthanc did not start or load; skipped"; FAILED=1; TARGETS="${TARGETS/orthanc/}"
  fi
fi

if want mifas; then
  cat >"$RUN/mifas.toml" <<EOF
[dicom]
aet = "MIFAS"

[[remote_ae]]
aet = "$DEST_AET"
host = "127.0.0.1"
port = $DEST_PORT
EOF
  if ! start_mifas "$RUN/mifas.toml"; then
    note "mifas does not start with a [[remote_ae]] config ($(grep -m1 -iE 'error|remote_ae' "$RUN/mifas/log.txt" | cut -c1-160)): retrieve not implemented in this binary? Started without it: its retrieves must fail"
    FAILED=1
    printf '[dicom]\naet = "MIFAS"\n' >"$RUN/mifas.toml"
    start_mifas "$RUN/mifas.toml" || { note "mifas did not start at all; skipped"; TARGETS="${TARGETS/mifas/}"; }
  fi
  if want mifas; then
    if load_study mifas MIFAS "$MIFAS_PORT"; then
      n=$(find "$RUN/mifas/data/objects" -type f -name '*.dcm' 2>/dev/null | wc -l)
      [[ "$n" == "$COUNT" ]] || { note "MIFAS holds $n object files after the load, expected $COUNT"; FAILED=1; }
    else
      FAILED=1
    fi
  fi
fi

wait_quiet
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
  grep -hE ' (ERROR|WARN) ' "$RUN/mifas/log.txt" | sed -E 's/^[^ ]+ +//' | cut -c1-200 | sort | uniq -c |
    sort -rn | head -5 >"$RUN/mifas-warnings.txt" || true
  if [[ -s "$RUN/mifas-warnings.txt" ]]; then note "MIFAS warnings/errors in its log: $(head -3 "$RUN/mifas-warnings.txt" | tr -s ' ' | tr '\n' ';')"; fi
  stop_pid "$MIFAS_PID" mifas
fi
if [[ -n "${ORTH_PID:-}" ]]; then stop_pid "$ORTH_PID" Orthanc; fi
stop_pid "$DEST_PID" storescp

python3 "$HERE/report.py" "$RUN" >"$RUN/report.md"
cp "$RUN/report.md" "$WORKDIR/report-$(date +%Y%m%d-%H%M).md"
cp "$RESULTS" "$WORKDIR/results-$(date +%Y%m%d-%H%M).tsv"
cat "$RUN/report.md"
if [[ "${RETRIEVE_NO_RESULTS:-0}" != 1 ]]; then
  if [[ $FAILED == 0 || "${RETRIEVE_RESULTS_ON_FAIL:-0}" == 1 ]]; then
    { echo; cat "$RUN/report.md"; } >>"$REPO/bench/RESULTS.md"
    log "appended to bench/RESULTS.md"
  else
    log "a check failed: bench/RESULTS.md not touched (RETRIEVE_RESULTS_ON_FAIL=1 to append anyway)"
  fi
fi
exit $FAILED
