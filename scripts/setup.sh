#!/usr/bin/env bash
# Installs everything plait's demo and tests need on a fresh Debian machine:
# Debian packages (only those missing), a virtualenv in .venv, plait (editable)
# with its test extras, and the compiled hot path. Safe to run again; fast when nothing is
# missing. Each step says what it does, and a long one shows every 10 s how far it is (the
# latest line of its output); a failing step prints its whole output.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=5
step() { echo "setup [$1/$STEPS] $2"; }
# run WHAT CMD...: say WHAT, run CMD with its output in a log
run() {
  local what=$1 log pid t=0
  shift
  echo "  $what"
  log=$(mktemp)
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    t=$((t + 1))
    if ((t % 10 == 0)); then
      echo "  ... ${t}s: $(tail -n 1 "$log" | tr -d '\r' | cut -c 1-110)"
    fi
  done
  if ! wait "$pid"; then
    cat "$log" >&2
    echo "setup: failed (${t}s): $*" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "  done (${t}s)"
}

# clang + lld build the C Proxy-Wasm test module (wasm32); npm the AssemblyScript one;
# prometheus is the real server that scrapes a mesh through the control plane's http_sd.
DEBS=(nginx-light haproxy wrk nghttp2-client redis-server redis-tools curl openssl iproute2 iptables procps
      clang lld prometheus)
command -v npm >/dev/null || DEBS+=(npm)
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup [1/$STEPS] missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  else
    step 1 "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    run "apt-get update" apt-get update
    run "apt-get install (${#missing[@]} packages)" apt-get install -y --no-install-recommends "${missing[@]}"
    # The Debian packages start their daemons; plait's tests start their own.
    for svc in nginx haproxy redis-server prometheus; do
      (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop 2>/dev/null || true
    done
  fi
else
  step 1 "Debian packages: all present"
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  step 2 "creating the virtualenv .venv"
  run "$PY -m venv .venv" "$PY" -m venv .venv
else
  step 2 "virtualenv .venv: present"
fi
stamp=.venv/.plait-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp || setup.py -nt $stamp || scripts/setup.sh -nt $stamp ]]; then
  step 3 "installing plait and its test tools into .venv"
  run "pip: upgrading pip" .venv/bin/python -m pip install --upgrade pip
  run "pip: plait and its test dependencies (building plait compiles its hot path: ~2 min)" \
    .venv/bin/python -m pip install -e '.[test]'
  # xds-protos ships its own, older copies of opentelemetry-proto's modules (the same
  # file paths), and whichever package pip installs last wins. The OTLP exporters need
  # opentelemetry-proto's own, so it is installed again, over them.
  otel_proto=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("opentelemetry-proto"))')
  run "pip: opentelemetry-proto $otel_proto over xds-protos' copies" \
    .venv/bin/python -m pip install --force-reinstall --no-deps "opentelemetry-proto==$otel_proto"
  # Test-only fixture package: a third-party filter found through the entry point.
  run "pip: the test fixture filter package" .venv/bin/python -m pip install -e tests/fixtures/thirdparty_filter
  touch "$stamp"
else
  step 3 "plait in .venv: installed"
fi
# The hot path is compiled with mypyc in place (setup.py): rebuild it when one of its
# sources changed since (PLAIT_COMPILE=0: uncompiled, nothing to do).
stale=$(.venv/bin/python scripts/stale_compiled.py)
if [[ -n $stale ]]; then
  step 4 "compiling the hot-path modules with mypyc ($(wc -l <<<"$stale") changed, ~1 min)"
  run "setup.py build_ext --inplace" .venv/bin/python setup.py build_ext --inplace
else
  step 4 "compiled hot path: up to date"
fi

# The AssemblyScript Proxy-Wasm SDK the tests rebuild their module with (pinned by its
# package-lock.json; from the npm registry).
as_dir=tests/plugins/wasm/modules/as_headers
if [[ ! -x $as_dir/node_modules/.bin/asc || $as_dir/package-lock.json -nt $as_dir/node_modules ]]; then
  step 5 "installing the AssemblyScript Proxy-Wasm SDK for the wasm tests (npm ci)"
  run "npm ci in $as_dir" npm ci --prefix "$as_dir" --no-audit --no-fund
  touch "$as_dir/node_modules"
else
  step 5 "AssemblyScript Proxy-Wasm SDK: present"
fi
