# Shared by the site benchmarks (sourced after bench/lib.sh): WAN namespaces (wan.sh), HDFS sites
# inside them (sites.py up), MIFAS configurations for them (sites.py config), and the teardown.
# The sourcing script sets RUN, NOTES, TAG, PY and calls `trap site_cleanup EXIT` (with its
# KEEP knob in SITE_KEEP_RUN).
SITES_DIR="$BENCH_DIR/sites"
WAN="$SITES_DIR/wan.sh"
SITES_PY=("$PY" "$SITES_DIR/sites.py")
SITES_PID="" SITES_FD="" WAN_UP=0
# the site JVMs: serial GC, a heap for a few GB of blocks' metadata, and the full JIT (the
# datanodes' data path is measured; the tests cap the JIT for start-up time instead)
export MINIDFS_JAVA_OPTS="${MINIDFS_JAVA_OPTS:--XX:+UseSerialGC -Xms128m -Xmx768m -Xss512k}"

wan_up() {  # rates... (or "none"): namespaces and links; torn down by site_cleanup
  [[ $(id -u) == 0 ]] || die "the WAN emulation needs root (network namespaces, tc)"
  "$WAN" down >/dev/null 2>&1 || true   # leftovers of a killed run
  WAN_UP=1
  "$WAN" up "$@" >>"$RUN/wan.log" 2>&1 || { cat "$RUN/wan.log" >&2; die "wan.sh up failed"; }
  log "WAN links up: $*"
}

sites_up() {  # base_dir [sites.py up options...] -> SITES_JSON (sites live until sites_down)
  local base=$1 i line; shift
  mkfifo "$RUN/sites.in"
  "${SITES_PY[@]}" up --base "$base" "$@" <"$RUN/sites.in" >"$RUN/sites.out" 2>>"$RUN/sites.log" &
  SITES_PID=$!; ALL_PIDS+=("$SITES_PID")
  exec {SITES_FD}>"$RUN/sites.in"   # the sites run while this stays open
  for ((i = 0; i < 3000; i++)); do  # up to 5 min (three JVMs on 2 busy cores)
    line=$(grep -m1 '^SITES ' "$RUN/sites.out" 2>/dev/null || true)
    [[ -n "$line" ]] && break
    kill -0 "$SITES_PID" 2>/dev/null || break
    sleep 0.1
  done
  [[ "$line" == "SITES READY "* ]] || { tail -30 "$RUN/sites.log" >&2; die "HDFS sites did not start: ${line:-no READY line}"; }
  SITES_JSON=${line#SITES READY }
  log "HDFS sites up ($(python3 -c 'import json, sys
print(", ".join("%s %s in %s s" % (s["name"], s["url"], s["started_in"]) for s in json.load(open(sys.argv[1]))))' "$SITES_JSON"))"
}

sites_down() {
  [[ -n "$SITES_FD" ]] && { exec {SITES_FD}>&-; SITES_FD=""; }
  if [[ -n "$SITES_PID" ]]; then
    local i
    for ((i = 0; i < 600; i++)); do kill -0 "$SITES_PID" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$SITES_PID" "HDFS sites"; SITES_PID=""
  fi
}

site_cleanup() {  # EXIT trap: MIFAS and the other servers, the sites' JVMs, the namespaces, the run dir
  local rc=$?
  stop_all_pids
  sites_down
  if [[ $WAN_UP == 1 ]]; then "$WAN" down >>"$RUN/wan.log" 2>&1 || log "wan.sh down failed (see $RUN/wan.log)"; fi
  if [[ "${SITE_KEEP_RUN:-0}" == 1 ]]; then log "run data kept in $RUN"; else rm -rf "$RUN"; fi
  exit $rc
}

site_config() {  # out data_dir [sites.py config options...]: MIFAS TOML with the HDFS sites
  local out=$1 data=$2; shift 2
  "${SITES_PY[@]}" config --sites-json "$SITES_JSON" --data-dir "$data" --out "$out" "$@"
}

link_bound() {  # direction sites... -> lines "label MB/s" (linkbench.py) into $RUN/link-<direction>.txt
  local dir=$1; shift
  python3 "$SITES_DIR/linkbench.py" measure --direction "$dir" "$@" >"$RUN/link-$dir.txt" ||
    die "raw TCP measurement through the links failed"
  log "raw TCP ($dir): $(tr '\n' ' ' <"$RUN/link-$dir.txt")"
}

mifas_stat() {  # data_dir [config] key -> the value `mifas stats` prints for key
  local d=$1 cfg=$2 key=$3
  "$MIFAS_BIN" stats --data-dir "$d" ${cfg:+--config "$cfg"} 2>/dev/null | sed -n "s/^$key: //p"
}

# A MIFAS that grows without bound must not take the shared machine down: kill it past a limit.
# (mifas import onto three HDFS sites reached 21 GB RSS within 6 minutes once.)
RSS_LIMIT_MB="${SITE_RSS_LIMIT_MB:-4096}"
rss_guard() {  # pid label: background watchdog; writes $RUN/rss-<label>.txt (peak kB, killed or not)
  local pid=$1 label=$2
  (
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      ((${rss:-0} > peak)) && peak=$rss
      echo "peak_kb $peak" >"$RUN/rss-$label.txt"
      if ((${rss:-0} > RSS_LIMIT_MB * 1024)); then
        kill -KILL "$pid" 2>/dev/null
        echo "peak_kb $peak killed_over_mb $RSS_LIMIT_MB" >"$RUN/rss-$label.txt"
        break
      fi
      sleep 1
    done
  ) &
}

