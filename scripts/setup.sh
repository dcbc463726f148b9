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

# libblas.so.3 must be OpenBLAS. Debian selects it through update-alternatives.
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
blas=$(readlink -f "/usr/lib/$arch/libblas.so.3" || true)
if [[ "$blas" != *openblas* ]]; then
  cand=$(ls /usr/lib/"$arch"/openblas-pthread/libblas.so.3 2>/dev/null || true)
  if [ -n "$cand" ] && [ "$(id -u)" -eq 0 ]; then
    update-alternatives --set "libblas.so.3-$arch" "$cand" >/dev/null
    blas=$(readlink -f "/usr/lib/$arch/libblas.so.3" || true)
  fi
fi
if [[ "$blas" != *openblas* ]]; then
  echo "saelab setup: libblas.so.3 resolves to '$blas', not OpenBLAS." >&2
  echo "  LibTorch would run every matmul ~30x slower. Fix: apt-get install libopenblas0-pthread &&" >&2
  echo "  update-alternatives --config libblas.so.3-$arch (choose openblas-pthread)." >&2
  exit 1
fi
