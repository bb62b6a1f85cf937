#!/usr/bin/env bash
# Rebuilds filter.wasm from filter.c with Debian's clang and lld (apt-get install clang lld):
# wasm32, no libc, no SDK. The built module is committed, so the tests need no compiler;
# with clang installed, tests/plugins/wasm/test_c_filter.py checks the commit matches a rebuild.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-filter.wasm}
clang --target=wasm32 -O2 -nostdlib -fno-builtin -Wl,--no-entry -Wl,--strip-all \
  -Wl,--export-dynamic -o "$out" filter.c
