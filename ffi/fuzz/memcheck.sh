#!/bin/sh
# Runs the memcheck build of the unit tests under valgrind (`make memcheck`).
#
#   sh fuzz/memcheck.sh BIN valgrind [valgrind options...]      (from ffi/)
#
# valgrind's own report goes to BIN's directory/valgrind.log; its summary is
# printed after the tests, and the tests' closing "N passed, N failed" line is
# repeated as the last line. Exits non-zero when a case failed or valgrind
# found an error (its --error-exitcode).
set -u
bin=$1
shift
dir=$(dirname "$bin")
# One set of files per shard (LLMDD_TEST_SHARD=k/n, ffi/test/harness.c): the
# shards of one run go side by side.
tag=$(printf '%s' "${LLMDD_TEST_SHARD:-}" | tr -c '0-9' '-')
log=$dir/valgrind$tag.log
out=$dir/output$tag.txt
status=$dir/status$tag
rm -f "$log" "$status"
start=$(date +%s)
{ "$@" --log-file="$log" "$bin"; echo $? >"$status"; } | tee "$out"
rc=$(cat "$status")
echo "memcheck: $(( $(date +%s) - start ))s under valgrind (log $log)"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost' "$log" | sed 's/^==[0-9]*== */memcheck: /'
if [ "$rc" -ne 0 ]; then
  echo "memcheck: valgrind exited with status $rc; its reports:"
  grep -v -E '^==[0-9]+== *$' "$log" | sed -n '/Invalid\|uninitialised\|definitely lost in\|Mismatched\|overlap\|invalid/,+25p' | head -n 200
fi
last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
[ -n "$last" ] || last="0 passed, 1 failed"
echo "$last"
[ "$rc" -eq 0 ]
