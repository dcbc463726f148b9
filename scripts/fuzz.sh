#!/usr/bin/env bash
# Builds every libFuzzer target in fuzz/ with Debian's clang under ASan + UBSan into build-fuzz/ and
# runs each for SECONDS (default 60) from its seed corpus fuzz/corpus/<name>/ (new inputs go to
# build-fuzz/corpus/<name>/). Prints one summary line per target (executions, cov:, ft:) and
# exits non-zero when any target found a crash, leak, sanitizer report, timeout or an allocation
# over the cap; the reproducer is saved as build-fuzz/<name>/crash-* (or oom-*, timeout-*).
# Usage: bash scripts/fuzz.sh [SECONDS] [TARGET...]   (make fuzz SECONDS=...)
set -euo pipefail
cd "$(dirname "$0")/.."

# The targets, one a line: NAME | parser sources compiled with the sanitizers and coverage (besides
# fuzz/fuzz_NAME.cpp) | what else to link: torch, zip, pcre2, toml, or lib:MODULE for a module's
# library from build/ (built by scripts/build.sh, not instrumented). To add a target, write
# fuzz/fuzz_NAME.cpp with SAELAB_FUZZ_TARGET(NAME), seeds in fuzz/corpus/NAME/, optionally
# fuzz/NAME.dict, and append its line here.
TARGETS=(
  "safetensors    | src/saelab/core/safetensors_format.cpp | "
  "zip            | src/saelab/core/zip.cpp | zip"
  "npy            | src/saelab/core/npy.cpp src/saelab/core/zip.cpp src/saelab/core/io.cpp | torch zip"
  "torch_pickle   | src/saelab/core/torch_pickle.cpp src/saelab/core/zip.cpp | torch zip"
  "tokenizer_json | src/saelab/data/tokenizer.cpp src/saelab/data/tokenizer_json.cpp src/saelab/data/tokenizer_bpe.cpp src/saelab/data/tokenizer_unicode.cpp src/saelab/data/tokenizer_sentencepiece.cpp src/saelab/core/io.cpp src/saelab/core/json.cpp | pcre2"
  "sentencepiece  | src/saelab/data/tokenizer_sentencepiece.cpp src/saelab/data/tokenizer_bpe.cpp src/saelab/data/tokenizer_unicode.cpp src/saelab/core/io.cpp | pcre2"
  "metrics_jsonl  | src/saelab/log/metrics_jsonl.cpp src/saelab/core/io.cpp src/saelab/core/json.cpp | "
  "cfg_json       | src/saelab/sae/config.cpp src/saelab/core/json.cpp | lib:saelab_sae lib:saelab_core torch zip"
  "run_config     | src/saelab/config/config_io.cpp src/saelab/config/runner_config.cpp src/saelab/config/config_fields.cpp src/saelab/sae/config.cpp src/saelab/core/json.cpp src/saelab/core/io.cpp | lib:saelab_config lib:saelab_sae lib:saelab_core torch zip toml"
  # The table readers of data/ (Parquet, Arrow IPC) and the codecs they decompress with.
  "parquet        | src/saelab/data/parquet.cpp src/saelab/data/parquet_meta.cpp src/saelab/data/parquet_encoding.cpp src/saelab/data/thrift_compact.cpp src/saelab/data/codec.cpp src/saelab/data/snappy_decode.cpp src/saelab/data/mapped_file.cpp src/saelab/data/table_column.cpp | codecs"
  "arrow          | src/saelab/data/arrow_ipc.cpp src/saelab/data/flatbuffer.cpp src/saelab/data/codec.cpp src/saelab/data/snappy_decode.cpp src/saelab/data/mapped_file.cpp src/saelab/data/table_column.cpp | codecs"
)

SECS=${1:-60}
shift || true
ONLY=("$@")
OUT=build-fuzz
CXX=${FUZZ_CXX:-clang++}
if ! command -v "$CXX" >/dev/null; then
  echo "fuzz.sh: $CXX not found; install Debian's clang and libclang-rt-dev" >&2
  exit 1
fi
trim() { local s=$1; s=${s#"${s%%[![:space:]]*}"}; echo "${s%"${s##*[![:space:]]}"}"; }

SAN=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
CXXFLAGS=(-std=c++17 -g -O1 -Isrc -isystem /usr/include/torch/csrc/api/include
  -D_GLIBCXX_USE_CXX11_ABI=1 -DTOML_HEADER_ONLY=0 -DTOML_SHARED_LIB=1 -DSAELAB_LIBFUZZER)
mkdir -p "$OUT/obj"

# Compiles SRC to an object once; recompiles when it or any header it included (from clang's
# dependency file) is newer than the object.
object() {
  local src=$1 obj="$OUT/obj/$(echo "$1" | tr / _).o"
  local dep="${obj%.o}.d"
  if [ -f "$obj" ] && [ -f "$dep" ]; then
    local deps
    deps=$(sed -e 's/\\$//' -e 's/^[^:]*://' "$dep" | tr ' ' '\n' | grep -v '^$' || true)
    if [ -z "$(echo "$deps" | xargs -r -I{} find {} -newer "$obj" -print -quit 2>/dev/null)" ]; then
      echo "$obj"
      return
    fi
  fi
  echo "fuzz.sh: compiling $src" >&2
  "$CXX" "${CXXFLAGS[@]}" "${SAN[@]}" -fsanitize=fuzzer-no-link -MMD -MF "$dep" -c "$src" -o "$obj"
  echo "$obj"
}

build_target() {  # NAME SOURCES LINKS
  local name=$1 objs=() libs=() l
  local o
  for s in fuzz/fuzz_$name.cpp $2; do
    o=$(object "$s") || { echo "fuzz.sh: cannot compile $s" >&2; exit 1; }
    objs+=("$o")
  done
  local mods=()
  for l in $3; do
    case $l in
      lib:*) mods+=("${l#lib:}") ;;
      torch) libs+=(-ltorch -ltorch_cpu -lc10) ;;
      zip) libs+=(-lzip) ;;
      pcre2) libs+=(-lpcre2-8) ;;
      toml) libs+=(-ltomlplusplus) ;;
      codecs) libs+=(-lzstd -lz -lbrotlidec -llz4) ;;
      *) echo "fuzz.sh: unknown link item '$l' for $name" >&2; exit 1 ;;
    esac
  done
  if [ ${#mods[@]} -gt 0 ]; then
    # SAELAB_FUZZ_NO_BUILD=1 links the libraries already in build/ (while another build holds
    # the lock) instead of bringing them up to date first.
    [ "${SAELAB_FUZZ_NO_BUILD:-0}" = 1 ] || bash scripts/build.sh "${mods[@]}" >&2
    local archives=()
    for m in "${mods[@]}"; do archives+=("build/lib$m.a"); done
    libs=(-Wl,--start-group "${archives[@]}" -Wl,--end-group "${libs[@]}" -lgomp)
  fi
  local bin=$OUT/$name/fuzz_$name
  mkdir -p "$OUT/$name"
  local newest
  newest=$(ls -t "${objs[@]}" "${archives[@]+"${archives[@]}"}" 2>/dev/null | head -1)
  if [ ! -x "$bin" ] || [ "$newest" -nt "$bin" ]; then
    echo "fuzz.sh: linking $bin" >&2
    "$CXX" -fsanitize=fuzzer "${SAN[@]}" "${objs[@]}" "${libs[@]}" -lfmt -lpthread -o "$bin"
  fi
}

failed=()
summary=()
for line in "${TARGETS[@]}"; do
  IFS='|' read -r name srcs links <<<"$line"
  name=$(trim "$name")
  if [ ${#ONLY[@]} -gt 0 ] && [[ " ${ONLY[*]} " != *" $name "* ]]; then continue; fi
  build_target "$name" "$(trim "$srcs")" "$(trim "$links")"
  work=$OUT/corpus/$name
  mkdir -p "$work"
  dict=()
  [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
  echo "fuzz.sh: running $name for ${SECS}s"
  # Caps (docs/reliability.md): inputs up to 64 KiB, no single allocation over 512 MiB, at most
  # 2 GiB resident, 10 s per input.
  set +e
  "$OUT/$name/fuzz_$name" -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=512 "${dict[@]+"${dict[@]}"}" -artifact_prefix="$OUT/$name/" -print_final_stats=1 \
    "$work" "fuzz/corpus/$name" >"$OUT/$name/fuzz.log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/$name/fuzz.log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$OUT/$name/fuzz.log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1 || true)
  s=$(printf '%-15s execs %-9s %-22s %s' "$name" "${execs:-?}" "${last:-cov: ? ft: ?}" \
    "$([ $rc = 0 ] && echo ok || echo "FAILED (rc $rc, see $OUT/$name/fuzz.log)")")
  echo "fuzz.sh: $s"
  summary+=("$s")
  [ $rc = 0 ] || failed+=("$name")
done
printf '%s\n' "${summary[@]}" >"$OUT/summary.txt"
echo "fuzz.sh: summary (${SECS}s each):"
cat "$OUT/summary.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
