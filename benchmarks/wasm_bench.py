"""Micro benchmark: the CPU cost of one filter per request, wasm and Python, in one run.

Drives the same in-memory HTTP/1.1 sidecar path as :mod:`benchmarks.inline_bench` (a
real :class:`~plait.core.server._h1.H1Connection` and upstream connection, no
syscalls) with each of these chains, one after the other, in rounds:

=========  ================================================================================
``empty``  no filter
``py``     one no-op Python filter (``bench-passthrough``: both header hooks, returns None)
``wat``    one wasm filter in WAT adding a request header (``benchmarks/_wasm.py``: the
           smallest header-adding module)
``c``      the C test filter (``tests/plugins/wasm/modules/c_headers``): reads ``:path``,
           adds a request and a response header, exports every stream callback
``as``     the AssemblyScript SDK test filter (``as_headers``, @solo-io/proxy-runtime):
           the same behaviour through the SDK (context objects, header lists, logging)
=========  ================================================================================

Each chain's figure is the best of ``ROUNDS`` rounds of ``N`` requests (CPU time of
the process, so other work on the machine slows it little); its cost is the
difference to ``empty`` in the same run. Before measuring, one request through each
chain checks that the filter did its work (the header upstream, the response
header downstream). Run by hand:

    .venv/bin/python -m benchmarks.wasm_bench [CHAIN ...]      # N=20000 ROUNDS=3

For instruction counts (noise-free), run one chain alone (``BASE=0 ROUNDS=1``) under
``valgrind --tool=callgrind`` with two values of ``N`` and divide the difference of the
totals by the extra requests (``PLAIT_WASM_CACHE`` is not used: each run compiles its
modules into a temporary directory, the same work for both values of ``N``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import anyio

from ._wasm import add_header_chain
from .inline_bench import _run

REPO = Path(__file__).resolve().parent.parent
MODULES = REPO / "tests" / "plugins" / "wasm" / "modules"
AS_MODULE = MODULES / "as_headers" / "build" / "filter.wasm"
C_MODULE = MODULES / "c_headers" / "filter.wasm"

Check = Callable[[bytes], bool]


def _has(*needles: bytes) -> Check:
    return lambda data: all(n in data.lower() for n in needles)


def chains(workdir: Path) -> dict[str, tuple[str, Check, Check]]:
    """Chain name -> (YAML flow list, check of the upstream request, of the response)."""
    cache = workdir / "wasm-cache"

    def wasm(module: Path, extra: str = "") -> str:
        return f"[{{type: wasm, config: {{module: '{module}', cacheDir: '{cache}'{extra}}}}}]"

    def anything(_: bytes) -> bool:
        return True

    return {
        "empty": ("[]", anything, anything),
        "py": ("[{type: bench-passthrough}]", anything, anything),
        "wat": (add_header_chain(workdir), _has(b"x-wasm-added: yes"), anything),
        "c": (
            wasm(C_MODULE, ", pluginConfig: c-config"),
            _has(b"x-plait-wasm: c"),
            _has(b"x-plait-config: c-config"),
        ),
        "as": (
            wasm(AS_MODULE, ", rootId: plait_headers, pluginConfig: as-config"),
            _has(b"x-plait-wasm: as"),
            _has(b"x-plait-config: as-config"),
        ),
    }


def _checker(name: str, request_ok: Check, response_ok: Check) -> Callable[[bytes, bytes], None]:
    def check(request: bytes, response: bytes) -> None:
        if not request_ok(request):
            raise SystemExit(f"{name}: the filter's request header is missing: {request!r}")
        if not response_ok(response):
            raise SystemExit(f"{name}: the filter's response header is missing: {response!r}")

    return check


def measure(names: list[str], n: int, rounds: int) -> dict[str, float]:
    """Best CPU µs per request of each chain over ``rounds`` rounds of ``n`` requests."""
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        table = chains(Path(d))
        for _ in range(rounds):
            for name in names:
                chain, req_ok, resp_ok = table[name]
                us = anyio.run(
                    _run, 0, n, False, chain, _checker(name, req_ok, resp_ok),
                    backend_options={"use_uvloop": True},
                )  # fmt: skip
                best[name] = min(best.get(name, us), us)
    return best


def main() -> None:
    n = int(os.environ.get("N", "20000"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    names = sys.argv[1:] or ["empty", "py", "wat", "c", "as"]
    if "empty" not in names and os.environ.get("BASE", "1") != "0":
        names.insert(0, "empty")
    best = measure(names, n, rounds)
    base = best.get("empty", 0.0)
    print(f"in-process HTTP/1.1 path, CPU µs per request, best of {rounds} x {n}:")
    for name in names:
        cost = "" if name == "empty" else f"  filter cost {best[name] - base:6.1f}"
        print(f"  {name:6s} {best[name]:7.1f}{cost}")


if __name__ == "__main__":
    main()
