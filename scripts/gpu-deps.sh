#!/usr/bin/env bash
# Collects the headers, libraries and CMake package files saelab needs (besides LibTorch) from this
# Debian machine into .gpu/deps, laid out like /usr, for a machine that has a CUDA LibTorch but no
# Debian packages and no network (the lent GPU machine; scripts/gpu-build.sh builds there with it).
# fmt is not collected: LibTorch 2.x ships its headers (CMakeLists.txt uses them header-only).
# Debian 12's glibc (2.36) is older than the GPU image's, so these libraries load there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu/deps
arch=x86_64-linux-gnu
rm -rf "$out"; mkdir -p "$out/include" "$out/lib/$arch/cmake" "$out/share/cmake" "$out/rt"
cp -a /usr/include/nlohmann /usr/include/toml++ /usr/include/zip.h /usr/include/zipconf.h \
  /usr/include/pcre2.h "$out/include/"
cp -a /usr/share/cmake/nlohmann_json "$out/share/cmake/"
cp -a /usr/lib/$arch/libtomlplusplus.so* /usr/lib/$arch/libzip.so* \
  /usr/lib/$arch/libpcre2-8.so* "$out/lib/$arch/"
# libzip's own needs, used there only where the image lacks them (gpu-build.sh checks).
for l in libcrypto.so.3 libbz2.so.1.0 libz.so.1; do cp -L /lib/$arch/$l "$out/rt/"; done
du -sh "$out"
