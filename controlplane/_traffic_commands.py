"""``plait stat``, ``plait top`` and ``plait tap``: the mesh's traffic, from the control plane.

Each command asks the control plane (``/api/v1/stat``, ``/api/v1/tap``), which
reads the sidecars; the CLI only shows the answer (``_traffic_views.py``).
A resource is ``KIND`` (all of a kind), ``KIND/NAME`` or, for ``tap``, a bare
workload ``NAME``; kinds are ``workload`` (``wl``), ``service`` (``svc``) and
``sidecar``, singular or plural. ``top`` is tap added up by route: with
``-o json`` or ``--duration`` it prints one snapshot when the time is up; in a
terminal without ``--duration`` it redraws every ``--refresh`` until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ._ca_commands import CLIHelpers
from ._traffic_views import Top, parse_duration, render_stat, render_tap

__all__ = ["register_traffic"]

_KINDS = {"workload": "workload", "workloads": "workload", "wl": "workload",
          "service": "service", "services": "service", "svc": "service",
          "sidecar": "sidecar", "sidecars": "sidecar"}  # fmt: skip


def _resource(text: str | None, bare_is_name: bool) -> dict[str, str]:
    if not text:
        return {"kind": "workload"}
    kind, slash, name = text.partition("/")
    if not slash and bare_is_name and kind.lower() not in _KINDS:
        return {"kind": "workload", "name": kind}
    norm = _KINDS.get(kind.lower())
    if norm is None:
        raise ValueError(f"{text!r}: expected KIND or KIND/NAME, KIND one of workload, "
                         "service, sidecar")  # fmt: skip
    return {"kind": norm, "name": name} if name else {"kind": norm}


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register_traffic(sub: Any, client: argparse.ArgumentParser, helpers: CLIHelpers) -> None:
    s = sub.add_parser(
        "stat",
        parents=[client],
        help="success rate, requests/s and latency per workload or service",
    )
    s.add_argument("resource", nargs="?", help="KIND or KIND/NAME (default: every workload)")
    s.add_argument(
        "--window", type=_duration, default=10.0, help="how long to measure (default 10s)"
    )
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    s.set_defaults(func=lambda a: _stat(a, helpers))

    tap_filters = argparse.ArgumentParser(add_help=False)
    tap_filters.add_argument("--path", help="only requests whose path starts with this")
    tap_filters.add_argument("--status", help="only this status code (503) or class (5xx)")
    tap_filters.add_argument("--max", type=int, default=0, help="stop after N requests")
    tap_filters.add_argument(
        "--duration", type=_duration, help="stop after this long (10s, 2m); default: until Ctrl-C"
    )

    t = sub.add_parser(
        "tap",
        parents=[client, tap_filters],
        help="live stream of the requests a workload's sidecar handles",
    )
    t.add_argument("resource", help="workload NAME, or KIND/NAME")
    t.add_argument("-o", "--output", choices=("text", "json"), default="text")
    t.set_defaults(func=lambda a: _tap(a, helpers))

    p = sub.add_parser(
        "top", parents=[client, tap_filters], help="the busiest routes, live (built on tap)"
    )
    p.add_argument("resource", nargs="?", help="KIND or KIND/NAME (default: every workload)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--refresh", type=_duration, default=2.0, help="redraw interval (2s)")
    p.add_argument("--routes", type=int, default=20, help="rows to show (20; 0: all)")
    p.set_defaults(func=lambda a: _top(a, helpers))


def _stream(args: argparse.Namespace, helpers: CLIHelpers, path: str, query: dict[str, str],
            timeout: float | None) -> Iterator[Any]:  # fmt: skip
    api = helpers.client(args)
    return iter(api.stream(path, query, timeout=timeout))


def _stat(args: argparse.Namespace, helpers: CLIHelpers) -> int:
    from .api import APIError

    try:
        query = _resource(args.resource, bare_is_name=False)
    except ValueError as exc:
        return _usage(str(exc))
    query["window"] = str(args.window)
    try:
        for line in _stream(args, helpers, "/api/v1/stat", query, args.window + 30):
            if "started" in line:
                print(f"stat: measuring {line['sidecars']} sidecar(s) for {line['window']:g}s",
                      file=sys.stderr, flush=True)  # fmt: skip
            elif "stat" in line:
                for error in line.get("errors", []):
                    print(f"warning: {error}", file=sys.stderr)
                if args.output == "json":
                    sys.stdout.write(json.dumps(line, indent=2) + "\n")
                elif line["stat"]:
                    sys.stdout.write(render_stat(line["stat"]))
                else:
                    print("No connected sidecars.", file=sys.stderr)
    except APIError as exc:
        return helpers.fail(exc.message)
    return 0


def _tap_query(args: argparse.Namespace, bare_is_name: bool) -> dict[str, str]:
    query = _resource(args.resource, bare_is_name)
    for key in ("path", "status"):
        if getattr(args, key):
            query[key] = getattr(args, key)
    if args.max:
        query["max"] = str(args.max)
    if args.duration:
        query["duration"] = str(args.duration)
    return query


def _records(lines: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """The records of a tap stream; its notices go to stderr."""
    for line in lines:
        if "started" in line:
            print("tap: watching", file=sys.stderr, flush=True)
        elif "dropped" in line:
            print(f"tap: {line['dropped']} requests not shown (the stream fell behind)",
                  file=sys.stderr, flush=True)  # fmt: skip
        elif "error" in line:
            print(f"warning: {line['error']}", file=sys.stderr, flush=True)
        else:
            yield line


def _tap(args: argparse.Namespace, helpers: CLIHelpers) -> int:
    from .api import APIError

    try:
        query = _tap_query(args, bare_is_name=True)
    except ValueError as exc:
        return _usage(str(exc))
    try:
        for record in _records(_stream(args, helpers, "/api/v1/tap", query, None)):
            if args.output == "json":
                sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
            else:
                sys.stdout.write(render_tap(record))
            sys.stdout.flush()
    except APIError as exc:
        return helpers.fail(exc.message)
    except KeyboardInterrupt:
        return 130
    return 0


def _top(args: argparse.Namespace, helpers: CLIHelpers) -> int:
    from .api import APIError

    live = args.output == "table" and args.duration is None and sys.stdout.isatty()
    if not live and args.duration is None and not args.max:
        args.duration = 10.0  # a finite answer for scripts
    try:
        query = _tap_query(args, bare_is_name=False)
    except ValueError as exc:
        return _usage(str(exc))
    top = Top()
    lock = threading.Lock()
    failure: list[str] = []

    def consume() -> None:
        try:
            for record in _records(_stream(args, helpers, "/api/v1/tap", query, None)):
                with lock:
                    top.add(record)
        except APIError as exc:
            failure.append(exc.message)

    if not live:
        consume()
        if failure:
            return helpers.fail(failure[0])
        if args.output == "json":
            sys.stdout.write(json.dumps({"records": top.records, "dropped": top.dropped,
                                         "routes": top.rows(args.routes)},
                                        indent=2) + "\n")  # fmt: skip
        else:
            sys.stdout.write(top.render(args.routes))
        return 0
    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    try:
        while reader.is_alive():
            time.sleep(args.refresh)
            with lock:
                table = top.render(args.routes)
            sys.stdout.write("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + f"{top.records} "
                             "requests\n" + table)  # fmt: skip
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    return helpers.fail(failure[0]) if failure else 0
