#!/usr/bin/env bash
# Installs what saelab needs (Debian packages) when missing, then checks that LibTorch will get
# OpenBLAS: with the reference BLAS every matmul runs ~30x slower (docs/performance.md).
set -euo pipefail

PACKAGES=(
  build-essential cmake ccache
  libtorch-dev libopenblas-dev libgloo-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpcre2-dev libzip-dev zlib1g-dev
  libzstd-dev libbrotli-dev liblz4-dev zstd libsnappy-dev
  clang libclang-rt-dev protobuf-compiler
  python3-torch python3-numpy python3-sentencepiece
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node and npm (the GPT-2 tokenizer test's reference encoder) may come from outside Debian, whose
# npm then conflicts with the installed node: install Debian's only when there is no npm at all.
if ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "saelab setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libblas.so.3 must be OpenBLAS, and preferably its OpenMP build: LibTorch's own kernels run on
# OpenMP threads, and the pthread build's idle workers spin in sched_yield for a while after each
# matmul, taking the cores from the OpenMP threads that run next (measured: the topk step 4-18%
# and the standard step ~7% slower, medians of alternating runs). Debian selects the library through update-alternatives; a
# choice made by hand (manual mode) is left alone as long as it is OpenBLAS.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
# The library every front end loads in the end:
openblas=$(readlink -f "/usr/lib/$arch/libopenblas.so.0" || true)
mode=$(update-alternatives --query "libopenblas.so.0-$arch" 2>/dev/null | sed -n 's/^Status: //p' || true)
if [[ "$openblas" != *openblas-openmp* ]] && { [[ "$openblas" != *openblas* ]] || [ "$mode" = auto ]; } &&
  [ "$(id -u)" -eq 0 ]; then
  if [ ! -e "/usr/lib/$arch/openblas-openmp/libblas.so.3" ]; then
    echo "saelab setup: installing libopenblas0-openmp"
    apt-get install -y -qq --no-install-recommends libopenblas0-openmp ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends libopenblas0-openmp; }
  fi
  # All three names: Debian's libblas.so.3 and liblapack.so.3 are thin front ends that load
  # libopenblas.so.0 by its generic name, and two builds in one process each start their threads.
  for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    cand="/usr/lib/$arch/openblas-openmp/$lib"
    [ -e "$cand" ] && update-alternatives --set "$lib-$arch" "$cand" >/dev/null
  done
fi
blas=$(readlink -f "/usr/lib/$arch/libblas.so.3" || true)
if [[ "$blas" != *openblas* ]]; then
  echo "saelab setup: libblas.so.3 resolves to '$blas', not OpenBLAS." >&2
  echo "  LibTorch would run every matmul ~30x slower. Fix: apt-get install libopenblas0-openmp &&" >&2
  echo "  update-alternatives --config libblas.so.3-$arch (choose openblas-openmp)." >&2
  exit 1
fi
