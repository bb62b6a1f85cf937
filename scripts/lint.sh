#!/usr/bin/env bash
# ruff, import-linter (the layout's dependency contracts in pyproject.toml) and mypy --strict
# over plait, its tests and its benchmarks.
# mypy cannot follow setuptools' editable finder for the package-dir mapping
# (plait.core -> core/ ...), so it checks a symlink view build/typecheck/plait/.
set -euo pipefail
cd "$(dirname "$0")/.."
view=build/typecheck/plait
rm -rf build/typecheck && mkdir -p "$view"
for pkg in core filters plugins controlplane sdk; do ln -s "../../../$pkg" "$view/$pkg"; done
ln -s ../../tests build/typecheck/tests
ln -s ../../benchmarks build/typecheck/benchmarks
.venv/bin/ruff check core filters plugins controlplane sdk tests benchmarks
.venv/bin/ruff format --check core filters plugins controlplane sdk tests benchmarks >/dev/null || {
  echo "lint: ruff format would change files (run: .venv/bin/ruff format core filters plugins controlplane sdk tests benchmarks)"; exit 1; }
imports=$(.venv/bin/lint-imports --no-cache 2>&1) || {
  echo "$imports"; echo "lint: an import breaks a dependency contract (pyproject.toml [tool.importlinter])"; exit 1; }
cd build/typecheck
MYPYPATH=. ../../.venv/bin/mypy --config-file ../../pyproject.toml -p plait "$@"
# The SDK's examples (plain modules, not a package of plait) are held to the same bar.
MYPYPATH=. ../../.venv/bin/mypy --config-file ../../pyproject.toml plait/sdk/examples
# The tests are typed too (anyio/trio style): every file under tests/.
MYPYPATH=. ../../.venv/bin/mypy --config-file ../../pyproject.toml tests
# The benchmark harness and the reference proxy too.
MYPYPATH=. ../../.venv/bin/mypy --config-file ../../pyproject.toml benchmarks
