#!/usr/bin/env bash
# The whole test suite: installs what it needs (scripts/setup.sh), lints, runs every tier.
#   unit + codec + config tiers: fast; e2e/soak tiers (real processes): marked, still run here.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/lint.sh
exec .venv/bin/python -m pytest -q "$@"
