#!/bin/sh
# Builds the CANN adapter against the toolkit named by LLMDD_CANN_TOOLKIT — a CANN
# toolkit, or the stand-in built from upstream LLM-DataDist's public sources that
# README.md ("Running over upstream's own LLM-DataDist") describes — into
# ffi/build/cann-upstream/libllmdd_cann.so, where test/cann_upstream.test.ts
# looks for it. The toolkit's lib64 is the library's RUNPATH, so the test loads it
# without LD_LIBRARY_PATH.
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
mkdir -p "$out"
ASCEND_TOOLKIT_HOME=$toolkit make -C "$here" --no-print-directory lib \
  BUILD="$out/obj" LIB="$out/libllmdd_cann.so" CANN_LDFLAGS="-Wl,-rpath,$toolkit/lib64"
echo "built $out/libllmdd_cann.so against $toolkit"
