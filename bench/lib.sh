# Helpers shared by the benchmark scripts (sourced, not run). The sourcing script defines log()
# and NOTES (the run's notes file); stop_all_pids stops the processes listed in ALL_PIDS;
# wait_quiet_for reads QUIET_WAIT (seconds, 0 = do not wait).

note() { log "NOTE: $*"; printf '%s\n' "$*" >>"$NOTES"; }

stop_all_pids() {  # SIGTERM every process of ALL_PIDS, then SIGKILL those alive 10 s later
  local p i
  for p in "${ALL_PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in "${ALL_PIDS[@]}"; do
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

# other CPU-heavy work (a cargo build, a test suite, another benchmark) spoils the figures
busy() { grep -qsxE 'rustc|cargo|cc|cc1|cc1plus|c\+\+|ld|ld\.lld|rust-lld|pytest' /proc/[0-9]*/comm; }
cpu_idle() {  # percentage of idle CPU over the next 2 s
  local a b
  a=($(head -1 /proc/stat)); sleep 2; b=($(head -1 /proc/stat))
  local tot=0 i
  for ((i = 1; i < ${#a[@]}; i++)); do tot=$((tot + b[i] - a[i])); done
  echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (tot > 0 ? tot : 1) ))
}
heavy_procs() {  # processes above 20 % CPU over the next second (instantaneous, not lifetime)
  python3 - <<'PY'
import os, time
def snap():
    d = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                f = open(f"/proc/{p}/stat").read()
                name = f[f.index("(") + 1:f.rindex(")")]
                rest = f[f.rindex(")") + 2:].split()
                d[p] = (name, int(rest[11]) + int(rest[12]))
            except (OSError, ValueError, IndexError):
                pass
    return d
a = snap(); time.sleep(1); b = snap()
hz = os.sysconf("SC_CLK_TCK")
out = sorted(((b[p][1] - a[p][1]) * 100 / hz, b[p][0]) for p in b if p in a)
print(" ".join(f"{n}({c:.0f}%)" for c, n in reversed(out) if c > 20)[:200])
PY
}
wait_quiet_for() {  # $1 = what is about to be measured: wait up to QUIET_WAIT s for a quiet machine
  local max=${QUIET_WAIT:-900} t=0 idle="?"
  ((max == 0)) && return 0
  while ((t < max)); do
    idle=$(cpu_idle); t=$((t + 2))
    if ! busy && ((idle >= 85)); then return 0; fi
    ((t % 60 < 5)) && log "machine busy (compiler running or CPU idle ${idle}% < 85%), waiting ($t s) before: $1"
    sleep 3; t=$((t + 3))
  done
  note "$1: machine still busy after ${max} s (compiler or CPU idle ${idle}%: $(heavy_procs)); measured anyway"
}
