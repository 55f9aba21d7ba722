#!/usr/bin/env bash
# WAN emulation for the site benchmarks (issue 9): one network namespace per site, a veth pair to
# the host and a tbf rate limit in both directions. netem is not available on this kernel (no
# module), so links have a rate but no added delay.
#
#   bench/sites/wan.sh up [RATES...]     namespaces mifas-wan-a/b/c (veth, addresses, rates)
#   bench/sites/wan.sh shape [RATES...]  change the rates of existing links (sites keep running)
#   bench/sites/wan.sh down              remove the namespaces (kill what runs in them first)
#   bench/sites/wan.sh show              addresses and qdiscs
# RATES: one tc rate per site ("400mbit 200mbit 100mbit" for 4:2:1), or "none" for an unshaped
# link; default from $RATES, else "none none none". The number of rates is the number of sites (1-3).
#
# Site i (a=1, b=2, c=3): host side veth mwan-X-h 198.18.i.1/24, namespace side mwan-X-s
# 198.18.i.2/24 (198.18.0.0/15 is reserved for benchmarks, RFC 2544). tbf on the host side limits
# what the host sends (writes to the site); tbf on the namespace side limits what the site sends
# (reads from the site). Processes started with `ip netns exec mifas-wan-X ...` and bound to
# 198.18.i.2 (or 0.0.0.0) are reached by the host only through the shaped link.
# Needs root (CAP_NET_ADMIN).
set -euo pipefail

LETTERS=(a b c)
ns_name() { echo "mifas-wan-$1"; }
host_addr() { echo "198.18.$1.1"; }
site_addr() { echo "198.18.$1.2"; }

# tbf burst: at least 4 ms of traffic at the rate and at least 256 KiB. veth passes GSO packets of
# up to 64 KiB; a bucket smaller than a packet makes tbf segment or drop it, and a bucket of a few
# ms keeps the kernel's timer granularity from lowering the rate.
burst_of() {  # rate (tc syntax) -> bytes
  python3 - "$1" <<'PY'
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)(bit|bps)", sys.argv[1].lower())
if not m:
    sys.exit(f"wan.sh: cannot parse rate {sys.argv[1]!r} (e.g. 400mbit)")
v = float(m[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m[2]]
bytes_per_s = v / 8 if m[3] == "bit" else v
print(max(256 * 1024, int(bytes_per_s * 0.004)))
PY
}

set_rate() {  # i letter rate: replace both qdiscs of link i
  local i=$1 x=$2 rate=$3 ns burst
  ns=$(ns_name "$x")
  tc qdisc del dev "mwan-$x-h" root 2>/dev/null || true
  ip netns exec "$ns" tc qdisc del dev "mwan-$x-s" root 2>/dev/null || true
  [[ "$rate" == none ]] && return 0
  burst=$(burst_of "$rate")
  # latency: how long a packet may wait in the bucket's queue before it is dropped (queue size)
  tc qdisc add dev "mwan-$x-h" root tbf rate "$rate" burst "$burst" latency 100ms
  ip netns exec "$ns" tc qdisc add dev "mwan-$x-s" root tbf rate "$rate" burst "$burst" latency 100ms
}

rates_from_args() {  # -> RATE_LIST
  if (($# > 0)); then RATE_LIST=("$@"); else read -r -a RATE_LIST <<<"${RATES:-none none none}"; fi
  ((${#RATE_LIST[@]} >= 1 && ${#RATE_LIST[@]} <= 3)) || { echo "wan.sh: 1 to 3 rates" >&2; exit 2; }
}

up() {
  rates_from_args "$@"
  local i x ns
  for ((i = 1; i <= ${#RATE_LIST[@]}; i++)); do
    x=${LETTERS[i - 1]}; ns=$(ns_name "$x")
    if ip netns list | grep -qw "$ns"; then echo "wan.sh: $ns exists (wan.sh down first)" >&2; exit 1; fi
    ip netns add "$ns"
    ip link add "mwan-$x-h" type veth peer name "mwan-$x-s"
    ip link set "mwan-$x-s" netns "$ns"
    ip addr add "$(host_addr "$i")/24" dev "mwan-$x-h"
    ip link set "mwan-$x-h" up
    ip netns exec "$ns" ip addr add "$(site_addr "$i")/24" dev "mwan-$x-s"
    ip netns exec "$ns" ip link set "mwan-$x-s" up
    # the site's daemons talk to each other over the namespace's own loopback (unshaped)
    ip netns exec "$ns" ip link set lo up
    set_rate "$i" "$x" "${RATE_LIST[i - 1]}"
    echo "site $x: namespace $ns, host $(host_addr "$i"), site $(site_addr "$i"), rate ${RATE_LIST[i - 1]} each way"
  done
  # readiness: every site address is reachable from the host (no ping here: a TCP connect to a
  # closed port must be refused by the namespace's stack, not time out)
  for ((i = 1; i <= ${#RATE_LIST[@]}; i++)); do
    python3 -c 'import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=3)
except ConnectionRefusedError:
    sys.exit(0)
except OSError as e:
    sys.exit(f"wan.sh: {sys.argv[1]} unreachable: {e}")' "$(site_addr "$i")"
  done
}

shape() {
  rates_from_args "$@"
  local i x
  for ((i = 1; i <= ${#RATE_LIST[@]}; i++)); do
    x=${LETTERS[i - 1]}
    ip netns list | grep -qw "$(ns_name "$x")" || { echo "wan.sh: $(ns_name "$x") missing (wan.sh up)" >&2; exit 1; }
    set_rate "$i" "$x" "${RATE_LIST[i - 1]}"
    echo "site $x: rate ${RATE_LIST[i - 1]} each way"
  done
}

down() {
  local x ns pids
  for x in "${LETTERS[@]}"; do
    ns=$(ns_name "$x")
    ip netns list | grep -qw "$ns" || continue
    # a namespace with processes in it outlives `ip netns del`: stop them first (only the
    # processes inside this namespace, by pid)
    pids=$(ip netns pids "$ns" || true)
    if [[ -n "$pids" ]]; then
      echo "wan.sh: stopping processes still in $ns: $(echo $pids)" >&2
      kill -TERM $pids 2>/dev/null || true
      for _ in $(seq 100); do [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && break; sleep 0.1; done
      pids=$(ip netns pids "$ns" || true)
      [[ -z "$pids" ]] || kill -KILL $pids 2>/dev/null || true
    fi
    ip link del "mwan-$x-h" 2>/dev/null || true   # removes its peer too
    ip netns del "$ns"
    echo "site $x: $ns removed"
  done
}

show() {
  local x ns
  for x in "${LETTERS[@]}"; do
    ns=$(ns_name "$x")
    ip netns list | grep -qw "$ns" || continue
    echo "== $ns"
    ip -br addr show dev "mwan-$x-h"
    ip netns exec "$ns" ip -br addr show dev "mwan-$x-s"
    tc qdisc show dev "mwan-$x-h" | sed 's/^/host egress (writes): /'
    ip netns exec "$ns" tc qdisc show dev "mwan-$x-s" | sed 's/^/site egress (reads):  /'
  done
}

cmd=${1:-}; shift || true
case "$cmd" in
  up) up "$@" ;;
  shape) shape "$@" ;;
  down) down ;;
  show) show ;;
  *) echo "usage: wan.sh up|shape [RATES...] | down | show" >&2; exit 2 ;;
esac
