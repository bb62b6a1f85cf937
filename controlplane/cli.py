"""The control plane's sub-commands of ``plait`` (entry-point group ``plait.commands``).

``register(subparsers)`` adds ``control-plane`` (run the control plane) and the
operator commands that talk to its resource API: ``apply``, ``get``,
``delete`` and ``check`` (reference: docs/control-plane.md), and the traffic views
``stat``, ``top`` and ``tap`` (``_traffic_commands.py``, docs/traffic.md). Each parser's
``func`` runs the command and returns the exit code: 0 on success, 1 when the
server refused or could not be reached (the message goes to stderr), 2 for
usage errors.

Every ``plait`` invocation runs ``register``, so this module imports nothing
heavy at the top: the API client, YAML and anyio load inside the commands.

Client settings: ``--server`` (else ``$PLAIT_SERVER``, else
``https://127.0.0.1:15014``), ``--token`` (else ``$PLAIT_TOKEN``, else the
token file of ``--data-dir`` / ``$PLAIT_DATA_DIR`` / ``~/.plait``) and
``--ca-bundle`` (else ``$PLAIT_CA_BUNDLE``, else ``ca-bundle.pem`` of that data
directory: the roots that verify the API's certificate).
Kinds are accepted in any case, singular or plural, and by their short names
(one table, ``_kinds.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from ._ca_commands import CLIHelpers, add_ca_flags, ca_flag_options, register_identity
from ._kinds import KIND_ALIASES, kinds_help, normalize_kind
from ._traffic_commands import register_traffic

__all__ = ["KIND_ALIASES", "normalize_kind", "register"]


def register(sub: Any) -> None:
    """Add the control plane's sub-commands to ``plait``'s argument parser."""
    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--server", default=os.environ.get("PLAIT_SERVER",
                        "https://127.0.0.1:15014"), help="the control plane's API URL")  # fmt: skip
    client.add_argument("--ca-bundle", default=os.environ.get("PLAIT_CA_BUNDLE"), metavar="FILE",
                        help="roots that verify the API (default $PLAIT_CA_BUNDLE, else "
                        "ca-bundle.pem of the data dir)")  # fmt: skip
    client.add_argument("--token", help="admin token (default: $PLAIT_TOKEN or the token file)")
    client.add_argument("--data-dir", help="where the token file is ($PLAIT_DATA_DIR, ~/.plait)")

    demo = sub.add_parser("demo", help="the demo mesh: a control plane, three sidecars, apps")
    demo.add_argument("--requests", type=int, default=200, help="requests per step (200)")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the mesh up afterwards until Ctrl-C or SIGTERM")  # fmt: skip
    demo.set_defaults(func=_demo)

    cp = sub.add_parser("control-plane", help="run the control plane (store, API, xDS)")
    cp.add_argument("--data-dir", help="state directory (default $PLAIT_DATA_DIR or ~/.plait)")
    cp.add_argument("--api-port", type=int, default=15014)
    cp.add_argument("--xds-port", type=int, default=15012)
    cp.add_argument("--xds-plaintext-port", type=int, default=None, metavar="PORT",
                    help="also serve xDS without TLS on PORT (proxyless gRPC clients "
                    "without certificates); off unless given")  # fmt: skip
    cp.add_argument("--xds-max-connection-age", type=float, default=1800.0, metavar="SECONDS",
                    help="an xDS connection lives this long (±10%%), then the sidecar "
                    "reconnects and presents its current certificate (default 1800)")  # fmt: skip
    cp.add_argument("--bind", default="127.0.0.1", help="address of the API and xDS listeners")
    cp.add_argument("--workload-grace", type=float, default=30.0,
                    help="seconds a gone sidecar's Workload stays (default 30)")  # fmt: skip
    cp.add_argument("--health-interval", type=float, default=5.0,
                    help="seconds between TCP health checks of workloads (0: off)")  # fmt: skip
    add_ca_flags(cp)
    cp.set_defaults(func=_control_plane)

    a = sub.add_parser("apply", parents=[client], help="create or update resources from YAML")
    a.add_argument("-f", "--filename", action="append", required=True, help="YAML file or dir")
    a.set_defaults(func=_apply)

    g = sub.add_parser("get", parents=[client], help="show resources")
    g.add_argument("kind", help=kinds_help())
    g.add_argument("name", nargs="?")
    g.add_argument("-n", "--namespace", help="default: all (with NAME: default)")
    g.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    g.set_defaults(func=_get)

    d = sub.add_parser("delete", parents=[client], help="delete resources")
    d.add_argument("kind", nargs="?", help=kinds_help())
    d.add_argument("name", nargs="?")
    d.add_argument("-n", "--namespace", default="default")
    d.add_argument("-f", "--filename", action="append", help="delete what these files define")
    d.set_defaults(func=_delete)

    c = sub.add_parser("check", parents=[client], help="validate the config and sidecar links")
    c.add_argument("-o", "--output", choices=("text", "json"), default="text")
    c.set_defaults(func=_check)

    helpers = CLIHelpers(call=_call, client=_client, fail=_fail)
    register_identity(sub, client, helpers)
    register_traffic(sub, client, helpers)


# -- control-plane ----------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(requests=args.requests, keep_running=args.keep_running)


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def _control_plane(args: argparse.Namespace) -> int:
    import anyio

    from ._token import TokenError, data_dir
    from ._xds_service import xds_service
    from .ca import CAFileError
    from .server import ControlPlaneOptions, run_control_plane

    ca_options = ca_flag_options(args, _fail)
    if isinstance(ca_options, int):
        return ca_options
    opts = ControlPlaneOptions(
        data_dir=data_dir(args.data_dir),
        api_bind=args.bind,
        api_port=args.api_port,
        xds_bind=args.bind,
        xds_port=args.xds_port,
        xds_plaintext_port=args.xds_plaintext_port,
        xds_max_connection_age=args.xds_max_connection_age,
        **ca_options,
    )
    try:
        anyio.run(
            partial(run_control_plane, opts, services=[xds_service],
                    extras={"workload_grace": args.workload_grace,
                            "health_interval": args.health_interval}),
            backend_options=_backend_options(),
        )  # fmt: skip
    except BaseException as exc:  # the task tree reports its errors in groups
        cause = exc
        while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
            cause = cause.exceptions[0]
        if isinstance(cause, TokenError | CAFileError):
            return _fail(str(cause))
        if isinstance(cause, OSError):
            why = cause.strerror if cause.strerror and cause.filename is None else cause
            return _fail(f"cannot start the control plane: {why}")
        if isinstance(cause, KeyboardInterrupt):
            return 130
        raise
    return 0


# -- client commands --------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from ._token import TokenError, data_dir, read_token
    from .api import APIClient

    token = args.token or os.environ.get("PLAIT_TOKEN")
    if not token:
        try:
            token = read_token(data_dir(args.data_dir))
        except TokenError as exc:
            print(f"warning: {exc}", file=sys.stderr)
    context = None
    if args.server.startswith("https:"):
        from plait.core.identity.bootstrap import TrustError, bundle_context

        from ._token import BUNDLE_FILE

        bundle = Path(args.ca_bundle) if args.ca_bundle else data_dir(args.data_dir) / BUNDLE_FILE
        try:
            context = bundle_context(bundle.read_bytes())
        except (OSError, TrustError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"warning: cannot read the control plane's CA bundle {bundle}: {why} "
                  "(pass --ca-bundle FILE or set PLAIT_CA_BUNDLE)", file=sys.stderr)  # fmt: skip
    return APIClient(args.server, token, ssl_context=context)


def _apply(args: argparse.Namespace) -> int:
    from ._upload import module_uploads
    from .api._tables import render_results

    files = _read_files(args.filename)
    if isinstance(files, int):
        return files
    try:
        modules = module_uploads(files)
    except OSError as exc:
        return _fail(str(exc))
    return _call(lambda: _client(args).apply(files, modules),
                 lambda body: render_results(body["results"]))  # fmt: skip


def _get(args: argparse.Namespace) -> int:
    from .api._tables import render_documents, render_table

    kind = normalize_kind(args.kind)
    if kind is None:
        return _fail(f"unknown kind {args.kind!r} (known: {kinds_help()})", 2)
    api = _client(args)
    if args.name:
        ns = args.namespace or "default"
        call: Any = lambda: {"items": [api.get(kind, ns, args.name)]}  # noqa: E731
    else:
        call = lambda: api.list(kind, args.namespace)  # noqa: E731

    def show(body: Any) -> str:
        items = body["items"]
        if not items and args.output == "table":
            print("No resources found.", file=sys.stderr)
            return ""
        if args.output == "table":
            return render_table(kind, items)
        return render_documents(items, args.output)

    return _call(call, show)


def _delete(args: argparse.Namespace) -> int:
    from .api._tables import render_results

    api = _client(args)
    if args.filename:
        if args.kind:
            return _fail("give either KIND NAME or -f FILE, not both", 2)
        files = _read_files(args.filename)
        if isinstance(files, int):
            return files
        call: Any = lambda: api.delete_documents(files)  # noqa: E731
    else:
        kind = normalize_kind(args.kind or "")
        if args.kind and kind is None:
            return _fail(f"unknown kind {args.kind!r} (known: {kinds_help()})", 2)
        if kind is None or not args.name:
            return _fail("usage: plait delete KIND NAME [-n NS]  |  plait delete -f FILE", 2)
        call = lambda: api.delete(kind, args.namespace, args.name)  # noqa: E731
    missing: list[Any] = []

    def show(body: Any) -> str:
        missing.extend(r for r in body["results"] if r["result"] == "not found")
        return render_results(body["results"])

    code = _call(call, show)
    return code or (1 if missing else 0)


def _check(args: argparse.Namespace) -> int:
    import json

    from .api._tables import render_check

    bad: list[bool] = []

    def show(body: Any) -> str:
        bad.append(not body.get("ok"))
        return json.dumps(body, indent=2) + "\n" if args.output == "json" else render_check(body)

    code = _call(lambda: _client(args).check(), show)
    return code or (1 if any(bad) else 0)


def _call(request: Any, show: Any) -> int:
    """Run ``request``; print ``show(body)`` and the warnings, or the error. The exit code."""
    from .api import APIError

    try:
        body = request()
    except APIError as exc:
        return _fail(exc.message)
    sys.stdout.write(show(body))
    for warning in body.get("warnings", []) if isinstance(body, dict) else []:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _read_files(paths: list[str]) -> list[tuple[str, str]] | int:
    """``(name, text)`` of each file; a directory gives its ``*.yaml``/``*.yml`` in name order."""
    out: list[tuple[str, str]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(c for c in path.iterdir() if c.suffix in (".yaml", ".yml"))
            if not found:
                return _fail(f"{p}: directory has no .yaml or .yml files")
        elif p == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        else:
            found = [path]
        for f in found:
            try:
                out.append((str(f), f.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                return _fail(f"{f}: cannot read: {getattr(exc, 'strerror', None) or exc}")
    return out


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
