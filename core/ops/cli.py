"""The ``plait`` command line.

Sub-commands that live outside the core (``control-plane``, ``apply``, ``get``,
``delete``, ``check``, ``demo``) are found through the entry-point group
``plait.commands``: each entry point is a function ``register(subparsers)``
that adds its parsers and sets ``func`` (``args -> exit code``) on them. The
core names none of them, as it names no filter.

Every command's parser takes ``--log-level`` and ``--log-format`` (``text`` or ``json``:
``_logging``), so they are shown in each command's help and may come before or after
the command. Usage errors exit 2 and name what
is valid (the commands, the log levels); a failure to start (a config error, a port
in use) is one line on stderr and exit 1, not a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from ._identity_flags import (
    add_identity_flags,
    ca_server_url,
    control_plane_trust,
    identity_options,
    identity_refusal,
)
from ._logging import LOG_FORMATS, configure_logging

__all__ = ["main", "only_error"]


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(LOG_LEVELS)})"
        )
    return text.lower()


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=argparse.SUPPRESS,  # a command's own default must not hide `plait --log-level`
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        help="log verbosity (default: $PLAIT_LOG_LEVEL, else info)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="plait's own logs: readable text, or one JSON object per line "
        "(default: $PLAIT_LOG_FORMAT, else text)",
    )


class _Parser(argparse.ArgumentParser):
    """``plait``: a missing command is answered with the list of commands."""

    def error(self, message: str) -> NoReturn:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and "required: COMMAND" in message:
                message += f"\ncommands: {', '.join(action.choices)} (plait COMMAND --help)"
        super().error(message)


class _CommandParser(argparse.ArgumentParser):
    """Every command's parser, also an entry point's: each takes (and shows) ``--log-level``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_log_level(self)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plait")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="plait", description="plait service mesh")
    _add_log_level(p)
    p.add_argument("--version", action="version", version=f"plait {_version()}")
    sub = p.add_subparsers(
        dest="cmd", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    s = sub.add_parser("sidecar", help="run a sidecar proxy")
    s.add_argument("--config", "-c", action="append", help="YAML file or dir (static mode)")
    s.add_argument("--sidecar", help="which Sidecar resource is this one (if several)")
    x = s.add_argument_group("control-plane mode (config over xDS instead of --config)")
    x.add_argument("--control-plane", metavar="HOST:PORT", help="the control plane's xDS address")
    x.add_argument("--node-id", help="this sidecar's xDS node id (default SIDECAR-HOST-ADMINPORT)")
    x.add_argument("--xds-plaintext", action="store_true",
                   help="--control-plane is its plaintext xDS port (--xds-plaintext-port): "
                   "for a sidecar without a mesh identity (the TLS port requires one)")  # fmt: skip
    x.add_argument(
        "--state-dir", help="where the last good config is kept (default $PLAIT_DATA_DIR/sidecar)"
    )
    x.add_argument("--service", help="register a Workload of this Service (its instance)")
    x.add_argument("--address", default="127.0.0.1", help="the Workload's address")
    x.add_argument("--service-account", default="default", help="the Workload's identity")
    x.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="Workload label"
    )
    add_identity_flags(s)
    s.add_argument(
        "--workers", type=int, default=1, help="processes sharing the ports (SO_REUSEPORT)"
    )
    i = s.add_argument_group("identity from files (your own PKI; reloaded on change and SIGHUP)")
    i.add_argument("--identity-cert", metavar="PEM", help="workload certificate chain, leaf first")
    i.add_argument("--identity-key", metavar="PEM", help="its private key")
    i.add_argument("--trust-bundle", metavar="PEM", help="the roots peers' chains lead to")
    s.add_argument("--plugin", action="append", default=[], help="extra plugin module to load")
    s.add_argument("--admin-port", type=int, help="override the admin port")
    s.add_argument("--no-watch", action="store_true", help="reload on SIGHUP only")
    s.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    s.add_argument("--admin-socket", help=argparse.SUPPRESS)

    v = sub.add_parser("validate", help="validate config files and exit")
    v.add_argument("--config", "-c", action="append", required=True)
    v.add_argument("--sidecar")
    v.add_argument("--plugin", action="append", default=[])

    sub.add_parser("filters", help="list the filter types this installation knows")

    d = sub.add_parser("demo-static", help="two demo services behind sidecars, static config")
    d.add_argument("--requests", type=int, default=20, help="requests of the split step (20)")
    d.add_argument("--keep-running", action="store_true",
                   help="keep the mesh up afterwards until Ctrl-C or SIGTERM")  # fmt: skip
    for ep in entry_points(group="plait.commands"):
        ep.load()(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "log_level"):
        try:
            args.log_level = _log_level(os.environ.get("PLAIT_LOG_LEVEL", "info"))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"PLAIT_LOG_LEVEL: {exc}")
    if not hasattr(args, "log_format"):
        args.log_format = os.environ.get("PLAIT_LOG_FORMAT", "text")
        if args.log_format not in LOG_FORMATS:
            parser.error(f"PLAIT_LOG_FORMAT: expected one of {', '.join(LOG_FORMATS)}")
    worker: int | str | None = None
    if args.cmd == "sidecar" and args.reuse_port:  # a worker of --workers N
        worker = args.worker_index
    elif args.cmd == "sidecar" and args.workers > 1:
        worker = "supervisor"
    configure_logging(args.log_level, args.log_format, worker)
    if (func := getattr(args, "func", None)) is not None:
        return int(func(args))
    if args.cmd == "sidecar":
        if bool(args.config) == bool(args.control_plane):
            print("plait sidecar: give either --config or --control-plane", file=sys.stderr)
            return 2
        if why := identity_refusal(args):
            print(f"plait sidecar: {why}", file=sys.stderr)
            return 2
        if args.control_plane and args.workers > 1:
            print(
                "plait sidecar: --workers > 1 needs --config (static mode): in control-plane "
                "mode each worker would be a node of its own",
                file=sys.stderr,
            )
            return 2
        if args.workers > 1:
            return _supervise(args)
        return _run_sidecar(args)
    if args.cmd == "validate":
        return _validate(args)
    if args.cmd == "filters":
        from .sidecar import load_plugins

        types = load_plugins(())
        for name in sorted(types):
            print(f"{name:32} {types[name].description}  ({types.origin(name)})")
        return 0
    if args.cmd == "demo-static":
        from .demo import run_demo

        return run_demo(requests=args.requests, keep_running=args.keep_running)
    return 2


def _run_sidecar(args: argparse.Namespace) -> int:
    from .sidecar import SidecarOptions, run_sidecar

    opts = SidecarOptions(
        config=args.config,
        sidecar=args.sidecar,
        reuse_port=args.reuse_port,
        admin_port=args.admin_port,
        admin_socket=args.admin_socket,
        worker_index=args.worker_index,
        watch=not args.no_watch,
        plugins=args.plugin,
        xds=_xds_options(args) if args.control_plane else None,
        identity_files=_identity_files(args),
        identity_agent=identity_options(args),
        control_plane_trust=control_plane_trust(args),
    )
    return _run_async(run_sidecar, opts)


def _identity_files(args: argparse.Namespace) -> Any:
    files = (args.identity_cert, args.identity_key, args.trust_bundle)
    if not any(files):
        return None
    if not all(files):
        raise SystemExit(
            "plait sidecar: --identity-cert, --identity-key and --trust-bundle go together"
        )
    from ..identity.files import IdentityFiles

    return IdentityFiles(*files)


def _run_async(func: Any, *args: Any) -> int:
    """``anyio.run(func, *args)``: its exit code, and its start-up errors as one line each."""
    import anyio

    from plait.sdk import ConfigError

    try:
        result = anyio.run(func, *args, backend_options={"use_uvloop": _has_uvloop()})
    except BaseException as exc:  # the task tree reports its errors in groups
        cause = only_error(exc)
        if isinstance(cause, ConfigError):
            print(f"plait: invalid config: {cause}", file=sys.stderr)
            return 1
        if isinstance(cause, OSError):
            why = cause.strerror if cause.strerror and cause.filename is None else cause
            print(f"plait sidecar: {why}", file=sys.stderr)
            return 1
        if isinstance(cause, KeyboardInterrupt):
            return 130
        raise
    return int(result or 0)


def only_error(exc: BaseException) -> BaseException:
    """The one error inside (nested) exception groups of one error each, else ``exc``.

    A task group reports a failed start-up (a port in use) as a group of one; the
    operator wants the one line that says what failed, not the tree of tasks.
    """
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _xds_options(args: argparse.Namespace) -> Any:
    import socket
    from pathlib import Path

    from ..xds._mode import XdsOptions

    sidecar = args.sidecar or "default"
    # Stable across restarts (the saved config and the registered Workload are keyed by it)
    # and distinct per instance on a host (each needs its own admin port).
    admin = args.admin_port if args.admin_port is not None else 15000
    node_id = args.node_id or f"{sidecar.split('.')[0]}-{socket.gethostname()}-{admin}"
    base = os.environ.get("PLAIT_DATA_DIR") or str(Path.home() / ".plait")
    state_dir = Path(args.state_dir or Path(base) / "sidecar")
    workload = None
    if args.service:
        bad = [item for item in args.label if not item.partition("=")[0] or "=" not in item]
        if bad:
            raise SystemExit(f"plait sidecar: --label expects KEY=VALUE, got {bad[0]!r}")
        labels = dict(item.partition("=")[::2] for item in args.label)
        workload = {"service": args.service, "address": args.address,
                    "serviceAccount": args.service_account, "labels": labels}  # fmt: skip
        # with an identity the sidecar terminates mesh mTLS: its Workload gets tlsMode mutual
        if args.join_token:
            workload["identity"] = "agent"
        elif args.identity_cert:
            workload["identity"] = "files"
    return XdsOptions(
        target=args.control_plane,
        node_id=node_id,
        sidecar=sidecar,
        state_file=state_dir / f"{node_id}.xds.json",
        workload=workload,
        module_server=ca_server_url(args),
        module_bundle=Path(args.ca_bundle) if args.ca_bundle else None,
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _validate(args: argparse.Namespace) -> int:
    from plait.sdk import ConfigError

    from ..config import load_config
    from .sidecar import load_plugins

    try:
        cfg = load_config(args.config, load_plugins(args.plugin), sidecar=args.sidecar)
    except ConfigError as exc:
        print(f"plait: invalid config: {exc}", file=sys.stderr)
        return 1
    print(f"ok: config {cfg.version}: {len(cfg.listeners)} listeners, {len(cfg.clusters)} clusters")
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """``--workers N``: N sidecar processes sharing each port (see ``supervisor``)."""
    from plait.sdk import ConfigError

    from ..config import load_config
    from .sidecar import load_plugins
    from .supervisor import supervise

    try:  # validate once here, so a bad config fails before any worker starts
        cfg = load_config(args.config, load_plugins(args.plugin), sidecar=args.sidecar)
    except ConfigError as exc:
        print(f"plait: invalid config: {exc}", file=sys.stderr)
        return 1
    base = [sys.executable, "-m", "plait.core.ops.cli", "--log-level", args.log_level,
            "--log-format", args.log_format, "sidecar"]  # fmt: skip
    for c in args.config:
        base += ["--config", c]
    for plugin in args.plugin:
        base += ["--plugin", plugin]
    if args.sidecar:
        base += ["--sidecar", args.sidecar]
    if args.no_watch:
        base += ["--no-watch"]
    for flag, value in (("--identity-cert", args.identity_cert),
                        ("--identity-key", args.identity_key),
                        ("--trust-bundle", args.trust_bundle)):  # fmt: skip
        if value:
            base += [flag, value]
    port = args.admin_port if args.admin_port is not None else cfg.admin.port
    return _run_async(supervise, base, args.workers, cfg.admin.bind, port)


if __name__ == "__main__":
    sys.exit(main())
