"""Real control-plane processes for tests: ``plait control-plane``, the CLI, xDS sidecars."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.support import PY, Proc, free_port, http_get, ready_or_stopped, start, wait_port

__all__ = [
    "api_context",
    "api_url",
    "apply",
    "ca_bundle",
    "config_dump",
    "plait",
    "start_control_plane",
    "start_xds_sidecar",
    "wait_for",
]


def start_control_plane(
    tmp: Path, *, data_dir: Path | None = None, api_port: int = 0, xds_port: int = 0,
    extra: tuple[str, ...] = (), plaintext: bool = True, plaintext_port: int = 0,
) -> Proc:  # fmt: skip
    """``plait control-plane`` with its data under ``tmp`` (ports: ``extra["api"/"xds"]``, and
    ``extra["xds_plaintext"]``: the plaintext xDS port for sidecars without an identity,
    always opened (on ``plaintext_port``, 0: a free one; a restart passes the one it had)
    unless ``extra`` names one or ``plaintext=False``)."""
    data_dir = data_dir or tmp / "cp-data"
    api_port = api_port or free_port()
    xds_port = xds_port or free_port()
    if plaintext and "--xds-plaintext-port" not in extra:
        extra = (*extra, "--xds-plaintext-port", str(plaintext_port or free_port()))
    log = tmp / f"control-plane-{api_port}.log"
    cmd = [PY, "-m", "plait.core.ops.cli", "--log-level", "info", "control-plane",
           "--data-dir", str(data_dir), "--api-port", str(api_port),
           "--xds-port", str(xds_port), *extra]  # fmt: skip
    p = start(cmd, log)
    proc = Proc(p, log, port=api_port, extra={"api": api_port, "xds": xds_port})
    if "--xds-plaintext-port" in extra:
        proc.extra["xds_plaintext"] = int(extra[extra.index("--xds-plaintext-port") + 1])
    proc.config = data_dir
    try:
        wait_port(api_port, timeout=20, proc=p)
        wait_port(xds_port, timeout=20, proc=p)
    except BaseException:
        proc.stop()  # the caller never got it: it would outlive the test
        raise
    return proc


def plait(cp: Proc, *args: str, stdin: str | None = None, check: bool = True,
          timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run the ``plait`` CLI against ``cp``."""
    assert cp.config is not None
    token = (cp.config / "admin-token").read_text().strip()
    cmd = [PY, "-m", "plait.core.ops.cli", *args]
    env = {**os.environ, "PLAIT_SERVER": api_url(cp), "PLAIT_TOKEN": token,
           "PLAIT_CA_BUNDLE": str(ca_bundle(cp))}  # fmt: skip
    r = subprocess.run(cmd, check=False, input=stdin, capture_output=True, text=True,
                       timeout=timeout, env=env)  # fmt: skip
    if check and r.returncode != 0:
        raise AssertionError(f"plait {' '.join(args)} → {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def api_url(cp: Proc) -> str:
    """The control plane's API (HTTPS, its own CA's certificate)."""
    return f"https://127.0.0.1:{cp.extra['api']}"


def ca_bundle(cp: Proc) -> Path:
    """The roots that verify the control plane's ports (``<data-dir>/ca-bundle.pem``)."""
    assert cp.config is not None
    return cp.config / "ca-bundle.pem"


def api_context(cp_or_bundle: Proc | Path) -> ssl.SSLContext:
    """A client context trusting only the control plane's roots (host name checked)."""
    bundle = cp_or_bundle if isinstance(cp_or_bundle, Path) else ca_bundle(cp_or_bundle)
    return ssl.create_default_context(cafile=str(bundle))


def apply(cp: Proc, tmp: Path, text: str, name: str = "apply.yaml") -> str:
    path = tmp / name
    path.write_text(textwrap.dedent(text))
    return plait(cp, "apply", "-f", str(path)).stdout


def start_xds_sidecar(
    tmp: Path, cp: Proc, sidecar: str, *args: str, admin_port: int | None = None,
    node_id: str | None = None, wait: bool = True, env: dict[str, str] | None = None,
) -> Proc:  # fmt: skip
    admin_port = admin_port or free_port()
    node_id = node_id or f"{sidecar}-{admin_port}"
    # A sidecar with a join token gets its certificate first and uses the TLS xDS port (its
    # roots from --ca-bundle unless the token's pin gives them); one without uses the
    # plaintext port: the TLS port requires a client certificate.
    port = cp.extra["xds"]
    token = "--join-token" in args or "PLAIT_JOIN_TOKEN" in (env or {})
    if not token and "--ca-bundle" not in args:  # (with it: a TLS test of its own)
        args = ("--xds-plaintext", *args)
        port = cp.extra["xds_plaintext"]
    log = tmp / f"sidecar-{node_id}.log"
    cmd = [PY, "-m", "plait.core.ops.cli", "--log-level", "info", "sidecar",
           "--control-plane", f"127.0.0.1:{port}", "--sidecar", sidecar,
           "--node-id", node_id, "--admin-port", str(admin_port),
           "--state-dir", str(tmp / "sidecar-state"), *args]  # fmt: skip
    proc = Proc(start(cmd, log, env), log, admin_port=admin_port)
    if wait:
        ready_or_stopped(proc, timeout=20)
    return proc


def config_dump(proc: Proc) -> dict[str, Any]:
    status, _, body = http_get(proc.admin_port, "/config_dump", timeout=5)
    assert status == 200, body
    return dict(json.loads(body))


def wait_for(check: Any, timeout: float = 10.0, step: float = 0.02) -> float:
    """Poll ``check()`` until truthy; returns the seconds it took (raises on timeout)."""
    start_t = time.monotonic()
    last: Any = None
    while time.monotonic() - start_t < timeout:
        with contextlib.suppress(OSError, AssertionError, KeyError, ValueError):
            last = check()
            if last:
                return time.monotonic() - start_t
        time.sleep(step)
    raise TimeoutError(f"condition not met after {timeout}s (last: {last!r})")
