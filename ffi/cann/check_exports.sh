#!/bin/sh
# Checks that a built library exports exactly the functions ffi/include/llmdd.h
# declares: every LLMDD_API function, and nothing else.
#   check_exports.sh LIBRARY
set -eu
lib=$1
header=$(dirname "$0")/../include/llmdd.h
want=$(sed -n 's/^LLMDD_API [^(]*[ *]\(llmdd_[a-z_0-9]*\)(.*/\1/p' "$header" | sort -u)
have=$(nm -D --defined-only "$lib" | awk '{print $NF}' | sort -u)
missing=$(printf '%s\n' "$want" | grep -vxF -e "$have" || true)
extra=$(printf '%s\n' "$have" | grep -vxF -e "$want" || true)
if [ -n "$missing" ] || [ -n "$extra" ]; then
  [ -z "$missing" ] || printf 'missing exports in %s:\n%s\n' "$lib" "$missing"
  [ -z "$extra" ] || printf 'unexpected exports in %s:\n%s\n' "$lib" "$extra"
  exit 1
fi
echo "exports: $(printf '%s\n' "$have" | wc -l) llmdd_* functions, exactly those of llmdd.h ($lib)"
