"""The ``plait`` command line as a user meets it: usage errors, --version, --log-level."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support import PY

COMMANDS = ("sidecar", "validate", "filters", "control-plane", "apply", "get", "demo")


def _plait(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "plait.core.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("args", [(), ("--bogus",)], ids=["nothing", "unknown-option"])
def test_no_command_lists_the_commands(args: tuple[str, ...]) -> None:
    r = _plait(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    commands = [ln for ln in r.stderr.splitlines() if ln.startswith("commands:")]
    assert commands, r.stderr
    for name in COMMANDS:
        assert name in commands[0]


@pytest.mark.parametrize(
    "args",
    [("--log-level", "loud", "filters"), ("filters", "--log-level", "loud")],
    ids=["before-command", "after-command"],
)
def test_a_bad_log_level_is_a_usage_error_listing_the_choices(args: tuple[str, ...]) -> None:
    r = _plait(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "invalid choice: 'loud'" in r.stderr
    assert "debug, info, warning, error, critical" in r.stderr


def test_a_bad_log_level_in_the_environment_is_named() -> None:
    r = _plait("filters", env={"PLAIT_LOG_LEVEL": "loud"})
    assert r.returncode == 2
    assert "PLAIT_LOG_LEVEL" in r.stderr and "Traceback" not in r.stderr


def test_version() -> None:
    from importlib.metadata import version

    r = _plait("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"plait {version('plait')}"


@pytest.mark.parametrize("command", ["sidecar", "validate", "control-plane", "get", "demo"])
def test_every_command_shows_log_level_in_its_help(command: str) -> None:
    r = _plait(command, "--help")
    assert r.returncode == 0
    assert "--log-level {debug,info,warning,error,critical}" in r.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "TLS xDS port requires a client certificate"),
        (("--xds-plaintext", "--join-token", "x.y.z"), "with --join-token"),
        (("--xds-plaintext", "--identity-cert", "c", "--identity-key", "k", "--trust-bundle",
          "b", "--service", "web"), "registers over the TLS xDS port"),
    ],
    ids=["no-identity", "plaintext-with-token", "plaintext-registering-an-identity"],
)  # fmt: skip
def test_control_plane_mode_refuses_a_sidecar_the_xds_ports_would_refuse(
    args: tuple[str, ...], says: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    r = subprocess.run(
        [PY, "-m", "plait.core.ops.cli", "sidecar", "--control-plane", "127.0.0.1:1", *args],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip
    assert r.returncode == 2
    assert says in r.stderr and "Traceback" not in r.stderr
