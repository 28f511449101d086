#!/bin/sh
# Finds the CANN toolkit for `make lib` and prints what the build needs as shell
# assignments, or says precisely what is missing and exits 1.
#
#   ASCEND_TOOLKIT_HOME or ASCEND_HOME_PATH   the toolkit (set by its set_env.sh)
#   CANN_API=v1|v2|auto (default auto)        which LLM-DataDist library to use:
#       v2: libllm_datadist.so (RegisterKvCache on ACL device memory, one device)
#       v1: libllm_engine.so   (AllocateCache, several devices per process)
#       auto: v2 if libllm_datadist.so is there, else v1
#   CANN_INCLUDES   include flags to use instead of the probed ones
#   CANN_EXTRA_LIBS extra -l flags (default: libgraph if present, for ge::AscendString)
set -u
CXX=${CXX:-g++}
say() { printf '%s\n' "$*" >&2; }
missing() {
  say "libllmdd_cann.so cannot be built: $1"
  say ""
  say "The CANN backend needs the Huawei CANN toolkit (headers llm_datadist/llm_datadist.h"
  say "and acl/acl.h, libraries libascendcl.so and libllm_datadist.so or libllm_engine.so)."
  say "On an Ascend machine with the toolkit installed, set up its environment first, e.g."
  say "  source /usr/local/Ascend/ascend-toolkit/set_env.sh    (toolkit package)"
  say "  source /usr/local/Ascend/cann/set_env.sh              (newer CANN layout)"
  say "then run ffi/cann/build.sh again. See ffi/cann/README.md."
  exit 1
}

if [ -n "${ASCEND_TOOLKIT_HOME:-}" ]; then
  toolkit=$ASCEND_TOOLKIT_HOME; from=ASCEND_TOOLKIT_HOME
elif [ -n "${ASCEND_HOME_PATH:-}" ]; then
  toolkit=$ASCEND_HOME_PATH; from=ASCEND_HOME_PATH
else
  missing "neither ASCEND_TOOLKIT_HOME nor ASCEND_HOME_PATH is set."
fi
[ -d "$toolkit" ] || missing "$from=$toolkit is not a directory."

absent=""
for h in llm_datadist/llm_datadist.h acl/acl.h; do
  [ -f "$toolkit/include/$h" ] || absent="$absent $toolkit/include/$h"
done
[ -z "$absent" ] || missing "header(s) not found:$absent"

lib64=$toolkit/lib64
[ -f "$lib64/libascendcl.so" ] || missing "$lib64/libascendcl.so not found."
api=${CANN_API:-auto}
case $api in
  auto)
    if [ -f "$lib64/libllm_datadist.so" ]; then api=v2
    elif [ -f "$lib64/libllm_engine.so" ]; then api=v1
    else missing "neither $lib64/libllm_datadist.so nor $lib64/libllm_engine.so exists."
    fi ;;
  v1) [ -f "$lib64/libllm_engine.so" ] || missing "CANN_API=v1 but $lib64/libllm_engine.so not found." ;;
  v2) [ -f "$lib64/libllm_datadist.so" ] || missing "CANN_API=v2 but $lib64/libllm_datadist.so not found." ;;
  *) missing "CANN_API=$api is not v1, v2 or auto." ;;
esac
if [ "$api" = v2 ]; then flavor=2; llmlib=llm_datadist; else flavor=1; llmlib=llm_engine; fi

command -v "$CXX" >/dev/null 2>&1 || missing "no C++ compiler ($CXX) found."
probe() {
  printf '#include "llm_datadist/llm_datadist.h"\n#include "acl/acl.h"\n' |
    "$CXX" -std=c++17 -E -x c++ - "$@" >/dev/null 2>"${TMPDIR:-/tmp}/llmdd_cann_probe.$$"
}
if [ -n "${CANN_INCLUDES:-}" ]; then
  # shellcheck disable=SC2086
  probe $CANN_INCLUDES || { cat "${TMPDIR:-/tmp}/llmdd_cann_probe.$$" >&2; missing "the headers do not preprocess with CANN_INCLUDES=$CANN_INCLUDES."; }
  includes=$CANN_INCLUDES
else
  includes=""
  for flags in "-I$toolkit/include" "-I$toolkit/include -I$toolkit/include/external" \
               "-I$toolkit/include -I$toolkit/pkg_inc"; do
    # shellcheck disable=SC2086
    if probe $flags; then includes=$flags; break; fi
  done
  if [ -z "$includes" ]; then
    cat "${TMPDIR:-/tmp}/llmdd_cann_probe.$$" >&2
    missing "llm_datadist/llm_datadist.h and acl/acl.h do not preprocess with -I$toolkit/include (set CANN_INCLUDES to the include flags they need)."
  fi
fi
rm -f "${TMPDIR:-/tmp}/llmdd_cann_probe.$$"

if [ -n "${CANN_EXTRA_LIBS+set}" ]; then extra=$CANN_EXTRA_LIBS
else
  extra=""
  [ -f "$lib64/libgraph.so" ] && extra="-lgraph"
fi

say "CANN toolkit: $toolkit (from $from); LLM-DataDist $api (lib$llmlib.so); includes: $includes"
printf "CANN_TOOLKIT='%s'\nCANN_FLAVOR='%s'\nCANN_LLM_LIB='%s'\nCANN_INCLUDE_FLAGS='%s'\nCANN_LINK_EXTRA='%s'\n" \
  "$toolkit" "$flavor" "$llmlib" "$includes" "$extra"
