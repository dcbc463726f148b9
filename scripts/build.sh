#!/usr/bin/env bash
# Configures (once) and builds the given targets in build/. Builds are serialised with a lock so
# that several shells on this 2-core machine never compile LibTorch code at the same time.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${SAELAB_BUILD_DIR:-build}
# ccache can cache compiles that use the precompiled header only with these sloppiness settings;
# BASEDIR makes its hits independent of where the clone lives.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
exec 9>"/tmp/saelab-build-$(echo "$PWD/$BUILD" | md5sum | cut -c1-8).lock"
flock 9
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${SAELAB_BUILD_TYPE:-RelWithDebInfo} "${launcher[@]}" >/dev/null
fi
if [ $# -eq 0 ]; then set -- all; fi
for t in "$@"; do
  cmake --build "$BUILD" --target "$t" -j "${JOBS:-2}"
done
