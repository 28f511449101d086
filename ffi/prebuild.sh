#!/usr/bin/env sh
# Builds the host backend for every platform the npm package ships prebuilt:
# linux-x64 and linux-arm64 (cross-compiled with Debian's gcc-aarch64-linux-gnu),
# into prebuilds/<platform>/libllmdd_host.so, where the loader looks for it.
# Each is built from clean objects in its own folder under ffi/build/.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)

build() { # platform compiler
  platform=$1
  cc=$2
  if ! command -v "$cc" >/dev/null 2>&1; then
    echo "prebuild: $cc not found; on Debian: apt-get install gcc-aarch64-linux-gnu" >&2
    exit 1
  fi
  make -s -C "$root/ffi" CC="$cc" BUILD="build/$platform" "build/$platform/libllmdd_host.so"
  mkdir -p "$root/prebuilds/$platform"
  cp "$root/ffi/build/$platform/libllmdd_host.so" "$root/prebuilds/$platform/"
  echo "prebuilds/$platform/libllmdd_host.so"
}

case $(uname -m) in
  x86_64) build linux-x64 cc; build linux-arm64 aarch64-linux-gnu-gcc ;;
  aarch64) build linux-arm64 cc; build linux-x64 x86_64-linux-gnu-gcc ;;
  *) echo "prebuild: no rule for $(uname -m)" >&2; exit 1 ;;
esac
