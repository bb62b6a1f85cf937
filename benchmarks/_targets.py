"""The upstream and the targets under test: how each is started, checked and stopped.

A target is started fresh in every round, pinned to the proxy core, checked with
one real request through it (status 200 and the upstream's exact body), measured,
then stopped with its whole process group.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import _configs, _hop, _wasm
from ._procs import LOAD_CORE, PROXY_CORE, Proc, ProcessFailed, free_ports, http_get, wait_http_ok

__all__ = ["TARGETS", "Running", "TargetSpec", "Upstream", "start_target", "start_upstream"]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TargetSpec:
    name: str
    label: str
    kind: str  # "direct" | "nginx" | "haproxy" | "reference" | "plait" | "plait-hop" | "nginx-hop"
    workers: int = 1
    filters: int = 0
    resilience: bool = False
    """An HTTPRoute with ``retry`` and a BackendTrafficPolicy: retry + breaker + P2C-EWMA."""
    h2: bool = True
    """Serves h2c on its second port (the h2load phase is skipped otherwise)."""
    wasm: bool = False
    """The chain is one wasm filter adding a request header (``_wasm.py``)."""
    tls: bool = False
    """Hop targets (``_hop.py``): mutual TLS between the two proxies."""
    keep_h1: bool = False
    """plait hop targets: HTTP/1.1 between the sidecars (not the default HTTP/2 upgrade)."""
    observe: str = ""
    """plait targets (both sidecars of a hop target): ``all``: access log to a file and
    tracing at 1 % (OTLP/HTTP to the upstream nginx,
    which answers 200 to any POST): what observability costs on top of the always-on
    metrics; ``log`` the access log only; ``trace`` tracing at 1 % only; ``trace0``
    tracing at 0 % (a fresh unsampled ``traceparent`` on every request, no span);
    ``none`` the request metrics off too (a ``Telemetry`` override): all three off."""
    breakdown: bool = False
    """Measures one part of another target's cost (``benchmarks.ab``): not in
    ``benchmarks.run``'s default list."""
    checkout: Path = REPO
    """The plait checkout whose build runs (its ``.venv``): another one, e.g. a git
    worktree of the commit before a change set up with ``scripts/setup.sh``, measures
    that build against this one."""


TARGETS: dict[str, TargetSpec] = {
    t.name: t
    for t in (
        TargetSpec("direct", "no proxy", "direct"),
        TargetSpec("nginx", "nginx (1 worker)", "nginx"),
        TargetSpec("haproxy", "HAProxy (1 thread)", "haproxy"),
        TargetSpec("reference", "reference (minimal Python)", "reference", h2=False),
        TargetSpec("plait", "plait 1w", "plait"),
        TargetSpec("plait-5f", "plait 1w, 5 filters", "plait", filters=5),
        TargetSpec("plait-pyfilter", "plait 1w, 1 no-op Python filter", "plait", filters=1),
        TargetSpec("plait-wasm", "plait 1w, 1 header-adding wasm filter", "plait", wasm=True),
        TargetSpec("plait-res", "plait 1w, retry+breaker+P2C", "plait", resilience=True),
        TargetSpec("plait-2w", "plait --workers 2", "plait", workers=2),
        TargetSpec("plait-obs", "plait 1w, access log + tracing 1 %", "plait", observe="all"),
        TargetSpec(
            "plait-bare", "plait 1w, request metrics off", "plait", observe="none", breakdown=True
        ),
        TargetSpec("plait-log", "plait 1w, access log", "plait", observe="log", breakdown=True),
        TargetSpec(
            "plait-trace", "plait 1w, tracing 1 %", "plait", observe="trace", breakdown=True
        ),
        TargetSpec(
            "plait-trace0", "plait 1w, tracing 0 %", "plait", observe="trace0", breakdown=True
        ),
        TargetSpec("nginx-hop", "nginx -> nginx", "nginx-hop"),
        TargetSpec("nginx-tls", "nginx -> nginx, mTLS", "nginx-hop", tls=True),
        TargetSpec("plait-hop", "plait -> plait", "plait-hop"),
        TargetSpec("plait-mtls", "plait -> plait, mTLS", "plait-hop", tls=True),
        TargetSpec(
            "plait-mtls-obs",
            "plait -> plait, mTLS, access logs + tracing 1 %",
            "plait-hop",
            tls=True,
            observe="all",
            breakdown=True,
        ),
        TargetSpec(
            "plait-mtls-bare",
            "plait -> plait, mTLS, request metrics off",
            "plait-hop",
            tls=True,
            observe="none",
            breakdown=True,
        ),
        TargetSpec(
            "plait-mtls-h1",
            "plait -> plait, mTLS, HTTP/1.1 between",
            "plait-hop",
            tls=True,
            keep_h1=True,
            breakdown=True,
        ),
    )
}


@dataclass
class Upstream:
    h1_port: int
    h2_port: int
    proc: Proc


@dataclass
class Running:
    """A started target: where to send load, and the process group to account and stop."""

    spec: TargetSpec
    h1_port: int
    h2_port: int
    proc: Proc | None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _workdir(base: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))


def _start_nginx(
    base: Path, name: str, conf_for: str, ports: list[int], upstream_port: int
) -> Proc:
    d = _workdir(base, name)
    conf = d / "nginx.conf"
    if conf_for == "upstream":
        conf.write_text(_configs.nginx_upstream_conf(d, ports[0], ports[1]))
        core = LOAD_CORE
    else:
        conf.write_text(_configs.nginx_proxy_conf(d, ports[0], ports[1], upstream_port))
        core = PROXY_CORE
    # -e: nginx opens its error log before reading the config; keep it in the temp dir too.
    argv = ["nginx", "-p", f"{d}/", "-c", str(conf), "-e", str(d / "error.log")]
    return Proc(name, argv, core, d / "stdout.log").start()


def start_upstream(base: Path, ready_timeout: float) -> Upstream:
    """Start the fixed nginx ``return 200`` upstream on the load core (files under ``base``)."""
    h1, h2 = free_ports(2)
    proc = _start_nginx(base, "upstream", "upstream", [h1, h2], 0)
    try:
        wait_http_ok(h1, proc, ready_timeout)
    except BaseException:
        proc.stop()
        raise
    return Upstream(h1, h2, proc)


def _start_plait(
    base: Path, spec: TargetSpec, ports: list[int], upstream_port: int, timeout: float
) -> Proc:
    d = _workdir(base, spec.name)
    h1, h2, admin = ports
    conf = d / "sidecar.yaml"
    chain = _wasm.add_header_chain(d) if spec.wasm else None
    text = _configs.plait_conf(h1, h2, admin, upstream_port, spec.filters, spec.resilience, chain)
    conf.write_text(_configs.observe(text, spec.observe, d / "access.log", upstream_port))
    own = spec.checkout == REPO
    plait = Path(sys.executable).parent / "plait" if own else spec.checkout / ".venv/bin/plait"
    argv = [str(plait), "sidecar", "--config", str(conf)]
    if spec.workers != 1:
        argv += ["--workers", str(spec.workers)]
    env = dict(os.environ)
    # The console script's sys.path starts at .venv/bin: put the repo on it for benchmarks.*.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(spec.checkout), env.get("PYTHONPATH")]))
    env["PLAIT_PLUGINS"] = "benchmarks.passthrough_filter"
    proc = Proc(spec.name, argv, PROXY_CORE, d / "stdout.log", env=env, cwd=spec.checkout).start()
    wait_http_ok(admin, proc, timeout, path="/ready")
    return proc


def _start_hop(
    base: Path, spec: TargetSpec, ports: list[int], upstream_port: int, timeout: float
) -> Proc:
    d = _workdir(base, spec.name)
    plait = Path(sys.executable).parent / "plait"
    argv, admins = _hop.hop_argv(
        d, spec.kind, spec.tls, ports, upstream_port, plait, spec.keep_h1, spec.observe
    )
    proc = Proc(spec.name, argv, PROXY_CORE, d / "stdout.log", cwd=REPO).start()
    for admin in admins:
        wait_http_ok(admin, proc, timeout, path="/ready")
    return proc


def _start_reference(base: Path, spec: TargetSpec, port: int, upstream_port: int) -> Proc:
    """``benchmarks/reference_proxy.py`` on this checkout's interpreter (HTTP/1.1 only)."""
    d = _workdir(base, spec.name)
    argv = [sys.executable, "-m", "benchmarks.reference_proxy", "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", f"127.0.0.1:{upstream_port}"]
    return Proc(spec.name, argv, PROXY_CORE, d / "stdout.log", cwd=REPO).start()


def start_target(base: Path, spec: TargetSpec, upstream: Upstream, ready_timeout: float) -> Running:
    """Start ``spec`` (its files in a new directory under ``base``); check a request through it.

    Raises:
        ProcessFailed: the target did not start, did not become ready, or did not
            relay the upstream's answer. Nothing is left running.
    """
    if spec.kind == "direct":
        return Running(spec, upstream.h1_port, upstream.h2_port, None)
    ports = free_ports(5 if spec.kind.endswith("-hop") else 3)
    proc: Proc | None = None
    try:
        if spec.kind == "nginx":
            proc = _start_nginx(base, spec.name, "proxy", ports, upstream.h1_port)
        elif spec.kind == "haproxy":
            d = _workdir(base, spec.name)
            (d / "haproxy.cfg").write_text(
                _configs.haproxy_conf(ports[0], ports[1], upstream.h1_port)
            )
            argv = ["haproxy", "-db", "-f", str(d / "haproxy.cfg")]
            proc = Proc(spec.name, argv, PROXY_CORE, d / "stdout.log").start()
        elif spec.kind == "reference":
            proc = _start_reference(base, spec, ports[0], upstream.h1_port)
        elif spec.kind == "plait":
            proc = _start_plait(base, spec, ports, upstream.h1_port, ready_timeout)
        elif spec.kind.endswith("-hop"):
            proc = _start_hop(base, spec, ports, upstream.h1_port, ready_timeout)
        else:
            raise ValueError(f"unknown target kind {spec.kind!r}")
        wait_http_ok(ports[0], proc, ready_timeout)
        _check_relay(ports[0])
    except BaseException:
        if proc is not None:
            proc.stop()
        raise
    return Running(spec, ports[0], ports[1], proc)


def _check_relay(port: int) -> None:
    status, body = http_get(port)
    if status != 200 or body != _configs.BODY.encode():
        raise ProcessFailed(f"127.0.0.1:{port} answered {status} with {body[:80]!r}")
