#!/bin/sh
# Builds the CANN adapter against the toolkit named by LLMDD_CANN_TOOLKIT — a CANN
# toolkit, or the stand-in built from upstream LLM-DataDist's public sources that
# README.md ("Running over upstream's own LLM-DataDist") describes — into
# ffi/build/cann-upstream/libllmdd_cann.so, where test/cann_upstream.test.ts
# looks for it. The toolkit's lib64 is the library's RUNPATH, so the test loads it
# without LD_LIBRARY_PATH.
#
# Also builds ffi/build/cann-upstream/two/libllmdd_cann.so, the same adapter
# allowing two engines in one process (LLMDD_CANN_MAX_ENGINES=2: a PROMPT and a
# DECODER side by side, as upstream's own tests run them), and, with the
# stand-in toolkit (host memory for "device" memory), builds and runs
# test/upstream/transfer_check.cpp over it: block pulls and pushes through the
# C ABI, bytes checked.
#
#   LLMDD_CANN_TOOLKIT=/path/to/toolkit sh ffi/cann/upstream_check.sh
#
# Builds nothing of upstream's and nothing that is shipped.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${LLMDD_CANN_TOOLKIT:-}" ]; then
  echo "upstream_check.sh: set LLMDD_CANN_TOOLKIT to a CANN toolkit directory (include/, lib64/)" >&2
  exit 1
fi
toolkit=$(cd "$LLMDD_CANN_TOOLKIT" && pwd)
out=$(cd "$here/.." && pwd)/build/cann-upstream
mkdir -p "$out/two"
ASCEND_TOOLKIT_HOME=$toolkit make -C "$here" --no-print-directory lib \
  BUILD="$out/obj" LIB="$out/libllmdd_cann.so" CANN_LDFLAGS="-Wl,-rpath,$toolkit/lib64"
echo "built $out/libllmdd_cann.so against $toolkit"
ASCEND_TOOLKIT_HOME=$toolkit make -C "$here" --no-print-directory lib \
  BUILD="$out/obj-two" LIB="$out/two/libllmdd_cann.so" CANN_LDFLAGS="-Wl,-rpath,$toolkit/lib64" \
  CANN_CXXFLAGS="${CANN_CXXFLAGS:-} -DLLMDD_CANN_MAX_ENGINES=2"
echo "built $out/two/libllmdd_cann.so (two engines per process) against $toolkit"
if [ -f "$toolkit/lib64/libruntime_stub.so" ]; then
  ${CXX:-g++} -std=c++17 -O1 -Wall -Wextra -Werror -I"$here/../include" -o "$out/two/transfer_check" \
    "$here/test/upstream/transfer_check.cpp" -L"$out/two" -lllmdd_cann -Wl,-rpath,"$out/two"
  "$out/two/transfer_check"
else
  echo "not the stand-in toolkit (no lib64/libruntime_stub.so): transfer_check not run"
fi
