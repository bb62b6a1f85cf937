#!/usr/bin/env bash
# Rebuilds build/filter.wasm from assembly/index.ts with the pinned AssemblyScript SDK
# (@solo-io/proxy-runtime 0.1.8, assemblyscript 0.14.13 from npm; package-lock.json).
# The built module is committed, so the tests need no Node.js; with the toolchain
# installed here, tests/plugins/wasm/test_as_sdk.py checks the commit matches a rebuild.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx asc assembly/index.ts -b build/filter.wasm --use abort=abort_proc_exit --optimize
