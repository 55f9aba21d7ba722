#!/bin/sh
# Run every fuzz target (or those named) one after another, then print the figures of each run
# from AFL++'s fuzzer_stats. Build first: cargo afl build --release.
#   tests/fuzz/run.sh [SECONDS [TARGET...]]      each target for SECONDS (default 300)
#   FUZZ_EXECS=10000000 tests/fuzz/run.sh 0 [TARGET...]   each target to that many executions
# Each run starts from the seeds (corpus/) and the kept minimised corpus (minimised/).
set -eu
cd "$(dirname "$0")"
seconds=${1:-300}
[ $# -gt 0 ] && shift
targets=${*:-"stow_multipart element_structure store_dataset cfind_identifier pdu_stream config_text"}
out=${FUZZ_OUT:-/tmp/fuzz-out}
mkdir -p "$out"
if [ -n "${FUZZ_EXECS:-}" ]; then stop="-E $FUZZ_EXECS"; else stop="-V $seconds"; fi
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
for t in $targets; do
    rm -rf "$out/$t" "$out/$t.in"
    mkdir -p "$out/$t.in"
    cp corpus/"$t"/* "$out/$t.in/"
    [ -d "minimised/$t" ] && cp minimised/"$t"/* "$out/$t.in/"
    # shellcheck disable=SC2086 # $stop is two words on purpose
    nice -n 19 cargo afl fuzz -i "$out/$t.in" -o "$out/$t" $stop "target/release/$t" \
        > "$out/$t.log" 2>&1 || { echo "$t: afl-fuzz failed, see $out/$t.log"; tail -20 "$out/$t.log"; continue; }
    s="$out/$t/default/fuzzer_stats"
    printf '%s: ' "$t"
    grep -E '^(run_time|execs_done|execs_per_sec|bitmap_cvg|edges_found|total_edges|corpus_count|saved_crashes|saved_hangs) ' "$s" \
        | awk '{printf "%s=%s ", $1, $3} END {print ""}'
done
