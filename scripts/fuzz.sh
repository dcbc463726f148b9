#!/usr/bin/env bash
# Builds the libFuzzer target for the safetensors header parser (fuzz/fuzz_safetensors.cpp) with
# Debian's clang into build-fuzz/ and runs it for SECONDS (default 60) from a generated seed corpus.
# Exits non-zero when the fuzzer finds a crash, leak, sanitizer error or timeout (reproducer saved
# as build-fuzz/crash-*). Usage: bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
OUT=build-fuzz
CXX=${FUZZ_CXX:-clang++}
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found; install Debian's clang and libclang-rt-dev" >&2
  exit 1
fi
mkdir -p "$OUT/corpus"
BIN=$OUT/fuzz_safetensors
SRCS=(fuzz/fuzz_safetensors.cpp src/saelab/core/safetensors_format.cpp)
rebuild=0
[ -x "$BIN" ] || rebuild=1
for f in "${SRCS[@]}" src/saelab/core/safetensors_format.h src/saelab/core/error.h; do
  [ "$f" -nt "$BIN" ] && rebuild=1
done
if [ $rebuild = 1 ]; then
  echo "fuzz.sh: building $BIN"
  "$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Isrc "${SRCS[@]}" -lfmt -o "$BIN"
fi
# Seeds: a valid file with several dtypes, metadata and a zero-size tensor, plus an empty header.
seed() {  # seed NAME HEADER DATA_BYTES
  local header=$2 n=${#2} le=""
  for i in 0 1 2 3 4 5 6 7; do le+=$(printf '\\x%02x' $(( (n >> (8 * i)) & 255 ))); done
  { printf "$le"; printf '%s' "$header"; head -c "$3" /dev/zero; } >"$OUT/corpus/$1"
}
seed valid '{"__metadata__":{"format":"pt"},"W_enc":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},"z":{"dtype":"I64","shape":[0],"data_offsets":[28,28]}}' 28
seed empty '{}' 0
echo "fuzz.sh: running for ${SECS}s"
"$BIN" -max_total_time="$SECS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict=fuzz/safetensors.dict -artifact_prefix="$OUT/" -print_final_stats=1 "$OUT/corpus"
echo "fuzz.sh: no crash in ${SECS}s"
