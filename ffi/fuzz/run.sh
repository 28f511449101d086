#!/bin/sh
# Runs the ABI fuzzer for a fixed time and sums it up in one closing line.
#
#   sh fuzz/run.sh BIN SECONDS [libFuzzer flags...]      (from ffi/)
#
# The corpus it grows is BIN's directory/corpus, seeded from fuzz/corpus/ (which
# is read, never written). Crash inputs go to BIN's directory/artifacts/. The
# whole libFuzzer log is BIN's directory/fuzz.log; on a crash its report is
# printed. The last line is "fuzz: N runs, N crashes"; the exit status is
# non-zero on a crash (or when the fuzzer did not run).
set -u
bin=$1
seconds=$2
shift 2
dir=$(dirname "$bin")
corpus=$dir/corpus
artifacts=$dir/artifacts
log=$dir/fuzz.log
mkdir -p "$corpus" "$artifacts"
before=$(ls "$artifacts" | wc -l)

echo "fuzz: $bin for ${seconds}s (corpus $corpus, seeds fuzz/corpus, log $log)"
"$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" fuzz/corpus >"$log" 2>&1
rc=$?

crashes=$(( $(ls "$artifacts" | wc -l) - before ))
runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
[ -n "$runs" ] || runs=0
speed=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
[ -n "$last" ] && echo "fuzz: last status: $last"
[ -n "$speed" ] && echo "fuzz: ${speed} exec/s on average"
if [ "$rc" -ne 0 ]; then
  [ "$crashes" -gt 0 ] || crashes=1
  echo "fuzz: libFuzzer exited with status $rc; its report:"
  sed -n '/invariant violated\|==ERROR\|runtime error\|deadly signal/,$p' "$log" | head -n 80
  ls -t "$artifacts" | head -n "$crashes" | sed "s|^|fuzz: crash input: $artifacts/|"
fi
echo "fuzz: $runs runs, $crashes crashes"
[ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]
