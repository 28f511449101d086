#!/bin/sh
# Builds ffi/build/libllmdd_cann.so against the installed CANN toolkit (see
# toolkit.sh for the variables it reads), or says what is missing.
#   ffi/cann/build.sh            build
#   CANN_API=v1 ffi/cann/build.sh   use libllm_engine.so (AllocateCache) instead
set -eu
here=$(cd "$(dirname "$0")" && pwd)
sh "$here/toolkit.sh" >/dev/null
make -C "$here" --no-print-directory lib
echo
echo "Built $(cd "$here/../build" && pwd)/libllmdd_cann.so. Use it with"
echo "  new LLMDataDist(role, clusterId, { backend: \"cann\" })    (found in ffi/build/)"
echo "or LLMDD_LIBRARY=$(cd "$here/../build" && pwd)/libllmdd_cann.so"
