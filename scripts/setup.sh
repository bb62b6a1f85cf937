#!/usr/bin/env bash
# Installs everything plait's demo and tests need on a fresh Debian machine:
# Debian packages (only those missing), a virtualenv in .venv, plait (editable)
# with its test extras. Safe to run again; fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nginx-light haproxy wrk nghttp2-client redis-server redis-tools curl iproute2 iptables procps)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  else
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The Debian packages start their daemons; plait's tests start their own.
    for svc in nginx haproxy redis-server; do
      (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop 2>/dev/null || true
    done
  fi
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.plait-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || setup.py -nt $stamp || scripts/setup.sh -nt $stamp ]]; then
  log=$(mktemp)
  .venv/bin/python -m pip install -q --upgrade pip >"$log" 2>&1 || { cat "$log"; exit 1; }
  .venv/bin/python -m pip install -q -e '.[test]' >"$log" 2>&1 || { cat "$log"; exit 1; }
  # Test-only fixture package: a third-party filter found through the entry point.
  .venv/bin/python -m pip install -q -e tests/fixtures/thirdparty_filter >"$log" 2>&1 || { cat "$log"; exit 1; }
  touch "$stamp"
fi
# The hot path is compiled with mypyc in place (setup.py): rebuild it when one of its
# sources changed since (PLAIT_COMPILE=0: uncompiled, nothing to do).
if [[ -n $(.venv/bin/python scripts/stale_compiled.py) ]]; then
  echo "setup: compiling the hot-path modules (mypyc, ~1 min)"
  log=$(mktemp)
  .venv/bin/python setup.py build_ext --inplace >"$log" 2>&1 || { cat "$log"; exit 1; }
fi
