# Shell half of the bench harness (sourced, not run); bench/harness.py is the Python half.
# The sourcing script sets TAG (log prefix), RUN (its run dir) and NOTES (the run's notes file)
# before calling anything; servers it starts are recorded in ALL_PIDS and stopped by stop_all_pids.
STORESCU=/usr/bin/storescu STORESCP=/usr/bin/storescp ECHOSCU=/usr/bin/echoscu
MOVESCU=/usr/bin/movescu GETSCU=/usr/bin/getscu ORTHANC=/usr/sbin/Orthanc
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
# Python with pydicom/pynetdicom/numpy: the test command's project-local .venv (bash tests/run.sh)
PY="${BENCH_PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$PY" ]] || PY=python3
HARNESS=("$PY" "$BENCH_DIR/harness.py")
export TCP_NODELAY=1   # DCMTK tools and Orthanc (DCMTK inside) read it: no Nagle on their sockets
ALL_PIDS=()

log() { printf '[%s %s] %s\n' "${TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
note() { log "NOTE: $*"; printf '%s\n' "$*" >>"$NOTES"; }
envset() { printf '%s: %s\n' "$1" "$2" >>"$RUN/env.txt"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
git_rev() {  # short HEAD, "+uncommitted" when src/ or Cargo.toml differ from it
  local r; r=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo none)
  git -C "$REPO" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || r="$r+uncommitted"
  echo "$r"
}
snapshot_bin() {  # $1 binary -> copy in $RUN (a concurrent cargo build must not swap it mid-run)
  local dst="$RUN/$(basename "$1")-snapshot"; cp "$1" "$dst"
  log "$(basename "$1"): built $(date -r "$1" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$dst" | cut -c1-12)"
  echo "$dst"
}
bin_info() { echo "built $(date -r "$1" '+%Y-%m-%d %H:%M'), sha256 $(sha256sum "$1" | cut -c1-12)"; }
dcmtk_version() { "$STORESCU" --version 2>/dev/null | head -1 | sed 's/^\$dcmtk: //; s/ \$$//'; }
orthanc_version() { "$ORTHANC" --version 2>/dev/null | head -1 | sed 's#.*/##'; }
machine() { echo "$(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/{print $2}') GiB RAM, kernel $(uname -r)"; }
disk_of() { df -hT "$1" | awk -v d="$1" 'NR==2{print $1" ("$2", "$3" total, "$5" free) for "d}'; }

# ---- processes -----------------------------------------------------------------------------------
stop_pid() {  # pid name: SIGTERM, SIGKILL after 30 s; sets STOP_RC
  local pid=$1 i
  STOP_RC=0
  [[ -z "$pid" ]] && return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      note "$2 (pid $pid) did not exit 30 s after SIGTERM; killed"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOP_RC=$?
}
stop_all_pids() { local p; for p in "${ALL_PIDS[@]}"; do stop_pid "$p" "pid $p"; done; }
finish_run() {  # EXIT trap: stop everything; keep the run dir if $1 (a knob's value) is 1; rm $2 if given
  local rc=$?
  stop_all_pids
  if [[ "${1:-0}" == 1 ]]; then log "run data kept in $RUN"; else rm -rf "$RUN"; fi
  [[ -z "${2:-}" ]] || rm -rf "$2"
  exit $rc
}
wait_echo() {  # aec port pid [tries of 0.1 s]: the peer answers C-ECHO while its process lives
  local aec=$1 port=$2 pid=$3 tries=${4:-300} i
  for ((i = 0; i < tries; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$ECHOSCU" -to 2 -ta 2 -aet BENCH -aec "$aec" 127.0.0.1 "$port" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
start_mifas() {  # dir [serve args...] -> MIFAS_PID MIFAS_PORT MIFAS_SECS (start to READY line)
  local d=$1 i t0; shift
  mkdir -p "$d"; : >"$d/out.txt"; t0=$(now)
  "${MIFAS_BIN:?}" serve --dicom-port 0 --http-port "$(free_port)" "$@" >"$d/out.txt" 2>>"$d/log.txt" &
  MIFAS_PID=$!; ALL_PIDS+=("$MIFAS_PID"); MIFAS_PORT=""
  for ((i = 0; i < 6000; i++)); do  # up to 10 min: reconciliation of 1M index entries
    kill -0 "$MIFAS_PID" 2>/dev/null || break
    MIFAS_PORT=$(sed -n 's/^MIFAS READY dicom=[^ ]*:\([0-9][0-9]*\) .*/\1/p' "$d/out.txt" | head -1)
    [[ -n "$MIFAS_PORT" ]] && break
    sleep 0.1
  done
  MIFAS_SECS=$(secs "$t0" "$(now)")
  if [[ -z "$MIFAS_PORT" ]]; then log "mifas printed no READY line; stderr tail:"; tail -5 "$d/log.txt" >&2; return 1; fi
  wait_echo MIFAS "$MIFAS_PORT" "$MIFAS_PID" 50
}
start_storescp() {  # dir [options...] -> SCP_PID SCP_PORT (AE STORESCP; files into dir/)
  local d=$1; shift
  mkdir -p "$d"; SCP_PORT=$(free_port)
  "$STORESCP" "$@" -od "$d" "$SCP_PORT" >"$d.log" 2>&1 &
  SCP_PID=$!; ALL_PIDS+=("$SCP_PID")
  wait_echo STORESCP "$SCP_PORT" "$SCP_PID" || { tail -20 "$d.log" >&2; return 1; }
}
start_orthanc() {  # dir [extra JSON members...] -> ORTH_PID ORTH_PORT ORTH_HTTP (AE ORTHANC)
  local d=$1 extra="" m; shift
  for m in "$@"; do extra+="  $m,"$'\n'; done
  mkdir -p "$d/storage" "$d/index"; ORTH_PORT=$(free_port); ORTH_HTTP=$(free_port)
  cat >"$d/config.json" <<JSON
{
$extra  "Name": "mifas-bench-$ORTH_PORT",
  "StorageDirectory": "$d/storage",
  "IndexDirectory": "$d/index",
  "StorageCompression": false,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomPort": $ORTH_PORT,
  "DicomCheckCalledAet": false,
  "HttpServerEnabled": true,
  "HttpPort": $ORTH_HTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": []
}
JSON
  "$ORTHANC" "$d/config.json" >"$d.log" 2>&1 &
  ORTH_PID=$!; ALL_PIDS+=("$ORTH_PID")
  wait_echo ORTHANC "$ORTH_PORT" "$ORTH_PID" 600 || { tail -20 "$d.log" >&2; return 1; }
}
orthanc_count() { curl -s "http://127.0.0.1:$ORTH_HTTP/statistics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])' 2>/dev/null || echo "?"; }
cpu_ticks() {  # user+sys clock ticks of a live process (all threads, reaped children)
  local st f; st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
  st=${st##*) }; read -r -a f <<<"$st"
  echo $((f[11] + f[12] + f[13] + f[14]))
}
tick_secs() { [[ -z "$1" || -z "$2" ]] && { echo "?"; return; }; python3 -c "print(f'{($2 - $1) / $(getconf CLK_TCK):.2f}')"; }

# ---- a quiet machine -----------------------------------------------------------------------------
# other CPU-heavy work (a cargo build, a test suite, another benchmark) spoils the figures
COMPILERS='rustc|cargo|cc|cc1|cc1plus|c\+\+|ld|ld\.lld|rust-lld|pytest'
busy() { grep -qsxE "$COMPILERS" /proc/[0-9]*/comm; }
BUSY_SEEN=""
busy_check() { if busy; then BUSY_SEEN="${BUSY_SEEN:+$BUSY_SEEN, }$1"; fi; }
idle_pct() {  # percentage of idle CPU over the next $1 s (default 2)
  local a b tot=0 i
  a=($(head -1 /proc/stat)); sleep "${1:-2}"; b=($(head -1 /proc/stat))
  for ((i = 1; i < ${#a[@]}; i++)); do tot=$((tot + b[i] - a[i])); done
  echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (tot > 0 ? tot : 1) ))
}
heavy_procs() { "${HARNESS[@]}" heavy-procs; }
wait_quiet() {  # $1 = what is about to be measured: wait up to QUIET_WAIT s for a quiet machine
  local max=${QUIET_WAIT:-900} t=0 idle="?"
  ((max == 0)) && return 0
  while ((t < max)); do
    idle=$(idle_pct); t=$((t + 2))
    if ! busy && ((idle >= 85)); then return 0; fi
    ((t % 60 < 5)) && log "machine busy (compiler running or CPU idle ${idle}% < 85%), waiting ($t s) before: $1"
    sleep 3; t=$((t + 3))
  done
  note "$1: machine still busy after ${max} s (compiler or CPU idle ${idle}%: $(heavy_procs)); measured anyway"
}
append_results() {  # report file: inserted into bench/RESULTS.md, newest run first
  "${HARNESS[@]}" insert-run "$BENCH_DIR/RESULTS.md" "$1" && log "added to bench/RESULTS.md"
}
