#!/bin/sh
# Builds the simulated toolkit, builds the adapter against it with `make lib`
# (V2 and V1), and runs example/device_cache.ts through each on Node.
# Test-only; see README.md. Output goes under ffi/build/cann/sim/.
set -eu
cann=$(cd "$(dirname "$0")/../.." && pwd)
root=$(cd "$cann/../.." && pwd)
out=$cann/../build/cann/sim
CXX=${CXX:-g++}
mkdir -p "$out/toolkit/lib64"
rm -rf "$out/toolkit/include" && cp -r "$cann/decls" "$out/toolkit/include"
flags="-std=c++17 -O1 -fPIC -shared -I$cann/decls"
$CXX $flags -o "$out/toolkit/lib64/libascendcl.so" "$cann/test/sim/sim_acl.cpp"
$CXX $flags -DLLMDD_SIM_V2 -o "$out/toolkit/lib64/libllm_datadist.so" "$cann/test/sim/sim_llm_datadist.cpp"
$CXX $flags -o "$out/toolkit/lib64/libllm_engine.so" "$cann/test/sim/sim_llm_datadist.cpp"

for api in v2 v1; do
  echo "== simulated toolkit, CANN_API=$api =="
  ASCEND_TOOLKIT_HOME=$out/toolkit CANN_API=$api make -C "$cann" --no-print-directory lib \
    BUILD="$out/build-$api" LIB="$out/libllmdd_cann_$api.so"
  (cd "$root" && LD_LIBRARY_PATH=$out/toolkit/lib64 LLMDD_LIBRARY=$out/libllmdd_cann_$api.so \
    node --import ./test/support/register.mjs ffi/cann/example/device_cache.ts)
  if [ "$api" = v2 ]; then
    (cd "$root" && LD_LIBRARY_PATH=$out/toolkit/lib64 LLMDD_LIBRARY=$out/libllmdd_cann_$api.so \
      node --import ./test/support/register.mjs ffi/cann/test/sim/cache_manager.ts)
  fi
  echo "-- a read slower than its deadline:"
  (cd "$root" && LD_LIBRARY_PATH=$out/toolkit/lib64 LLMDD_LIBRARY=$out/libllmdd_cann_$api.so \
    LLMDD_SIM_COPY_DELAY_MS=400 node --import ./test/support/register.mjs \
    ffi/cann/test/sim/timeout.ts)
done
