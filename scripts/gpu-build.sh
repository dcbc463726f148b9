#!/usr/bin/env bash
# Builds saelab (no tests) against the CUDA LibTorch of the machine's Python torch, with the
# dependencies scripts/gpu-deps.sh collected into .gpu/deps (carried there). Prints the build dir.
# usage (on the GPU machine, repo root): bash scripts/gpu-build.sh [targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
deps="$PWD/.gpu/deps"
[[ -d "$deps/include" ]] || { echo "gpu-build.sh: $deps: run scripts/gpu-deps.sh here first and carry .gpu" >&2; exit 1; }
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
for l in libcrypto.so.3 libbz2.so.1.0 libz.so.1; do
  ldconfig -p | grep -q "$l" || export LD_LIBRARY_PATH="$deps/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
gen=() keep=(-k); command -v ninja >/dev/null && gen=(-G Ninja) keep=(-k 0)
cmake -S . -B build-gpu "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSAELAB_TESTS=OFF \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps" -DCMAKE_LIBRARY_PATH="$deps/rt" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$deps/rt -Wl,-rpath,$deps/lib/x86_64-linux-gnu" \
  -DCMAKE_DISABLE_FIND_PACKAGE_fmt=TRUE -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90 >build-gpu.configure.log 2>&1 || { tail -40 build-gpu.configure.log; exit 1; }
[[ $# -gt 0 ]] || set -- saelab
cmake --build build-gpu --target "$@" -j "$(nproc)" -- "${keep[@]}"
