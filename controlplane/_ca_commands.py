"""The identity commands of ``plait``: ``workload token``, ``ca status``, ``ca rotate``,
``cert inspect``, and the CA flags of ``plait control-plane`` (docs/identity.md).

``workload token`` and the ``ca`` commands call the control plane's API with the admin
token (the same client settings as ``plait apply``); ``cert inspect FILE`` reads a PEM
chain locally. Exit codes: 0 success, 1 refused or unreachable (message on stderr),
2 usage errors. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CLIHelpers", "add_ca_flags", "ca_flag_options", "register_identity"]


@dataclass(frozen=True)
class CLIHelpers:
    """The operator CLI's request, client and error helpers (``cli.py``)."""

    call: Callable[[Callable[[], Any], Callable[[Any], str]], int]
    client: Callable[[argparse.Namespace], Any]
    fail: Callable[[str], int]


_cli: CLIHelpers
"""The operator CLI's helpers (call, client, fail), set by :func:`register_identity`."""


def register_identity(sub: Any, client: argparse.ArgumentParser, helpers: CLIHelpers) -> None:
    """Add the commands; ``helpers`` has the operator CLI's ``call``, ``client`` and ``fail``."""
    global _cli
    _cli = helpers
    w = sub.add_parser("workload", help="workload identities").add_subparsers(
        dest="workload_cmd", required=True, metavar="COMMAND"
    )
    t = w.add_parser("token", parents=[client], help="a join token bound to one identity")
    t.add_argument("-n", "--namespace", default="default")
    t.add_argument("-s", "--service-account", required=True)
    t.add_argument("--ttl", default="10m", type=_duration, help="lifetime (10m; s, m, h)")
    t.add_argument("-o", "--output", choices=("token", "json"), default="token")
    t.set_defaults(func=_token)

    ca = sub.add_parser("ca", help="the control plane's certificate authority").add_subparsers(
        dest="ca_cmd", required=True, metavar="COMMAND"
    )
    s = ca.add_parser("status", parents=[client], help="roots, rotation phase, issuance counts")
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    s.set_defaults(func=_status)
    r = ca.add_parser("rotate", parents=[client], help="start a root rotation")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.set_defaults(func=_rotate)

    cert = sub.add_parser("cert", help="certificates").add_subparsers(
        dest="cert_cmd", required=True, metavar="COMMAND"
    )
    i = cert.add_parser("inspect", help="show a PEM certificate chain file")
    i.add_argument("file")
    i.add_argument("-o", "--output", choices=("table", "json"), default="table")
    i.set_defaults(func=_inspect)


def add_ca_flags(cp: argparse.ArgumentParser) -> None:
    """The CA flags of ``plait control-plane``."""
    cp.add_argument("--trust-domain", default="plait.local",
                    help="SPIFFE trust domain of the mesh (default plait.local)")  # fmt: skip
    cp.add_argument("--cert-ttl", type=float, default=3600.0,
                    help="leaf certificate lifetime, seconds (default 3600, min 60)")  # fmt: skip
    cp.add_argument("--ca-root-cert", help="operator's root certificate (imported at first start)")
    cp.add_argument("--ca-root-key", help="its key (needed to make an intermediate, or rotate)")
    cp.add_argument("--ca-intermediate-cert", help="operator's intermediate certificate")
    cp.add_argument("--ca-intermediate-key", help="its key")


def ca_flag_options(
    args: argparse.Namespace, fail: Callable[[str, int], int]
) -> dict[str, Any] | int:
    """The CA's ``ControlPlaneOptions`` fields from the flags, or the exit code of a usage error."""
    from plait.sdk import InvalidSpiffeId, SpiffeId

    from .ca import MIN_LEAF_TTL, Provided

    try:
        SpiffeId.parse(f"spiffe://{args.trust_domain}")
    except InvalidSpiffeId as exc:
        return fail(f"--trust-domain: {exc}", 2)
    if args.cert_ttl < MIN_LEAF_TTL:
        return fail(f"--cert-ttl {args.cert_ttl:g}: expected at least {MIN_LEAF_TTL:g} seconds", 2)
    files = None
    if args.ca_root_cert:
        files = Provided(*(Path(p) if p else None for p in (
            args.ca_root_cert, args.ca_root_key, args.ca_intermediate_cert,
            args.ca_intermediate_key)))  # type: ignore[arg-type]  # fmt: skip
    elif args.ca_root_key or args.ca_intermediate_cert or args.ca_intermediate_key:
        return fail("--ca-root-key/--ca-intermediate-*: give --ca-root-cert too", 2)
    if bool(args.ca_intermediate_cert) != bool(args.ca_intermediate_key):
        return fail("--ca-intermediate-cert and --ca-intermediate-key go together", 2)
    return {"trust_domain": args.trust_domain, "cert_ttl": args.cert_ttl, "ca_files": files}


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        unit = units.get(text[-1:], 0)
        value = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration like 90s, 10m, 1h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive duration")
    return value


def _token(args: argparse.Namespace) -> int:
    body = json.dumps(
        {"namespace": args.namespace, "serviceAccount": args.service_account, "ttl": args.ttl}
    ).encode()
    api = _cli.client(args)

    def show(out: Any) -> str:
        if args.output == "json":
            return json.dumps(out, indent=2) + "\n"
        print(
            f"join token for {out['spiffeId']}, single use, expires {out['expires']}",
            file=sys.stderr,
        )
        return str(out["token"]) + "\n"

    return _cli.call(lambda: api.request("POST", "/api/v1/tokens", body=body, json_body=True), show)


def _status(args: argparse.Namespace) -> int:
    api = _cli.client(args)
    return _cli.call(
        lambda: api.request("GET", "/api/v1/ca"), lambda b: _show_status(b, args.output)
    )


def _rotate(args: argparse.Namespace) -> int:
    api = _cli.client(args)
    return _cli.call(
        lambda: api.request("POST", "/api/v1/ca/rotate", body=b"{}", json_body=True),
        lambda b: _show_status(b, args.output),
    )


def _show_status(body: Any, output: str) -> str:
    if output == "json":
        return json.dumps(body, indent=2) + "\n"
    lines = [f"Trust domain: {body['trustDomain']}"]
    if body["phase"] == "rotating":
        lines.append(
            f"Phase:        rotating: {body['leavesOnOldRoot']} leaves still on the old "
            f"root, old root droppable after {body['oldRootDroppableAfter'] or 'now'}"
        )
    else:
        lines.append("Phase:        stable")
    lines.append(f"Leaf TTL:     {body['leafTTLSeconds']:g}s")
    lines.append("Roots:")
    lines.append(f"  {'ROLE':9} {'SHA-256':64} NOT AFTER")
    for r in body["roots"]:
        lines.append(f"  {r['role']:9} {r['fingerprint']:64} {r['notAfter']}")
    issued = body["issued"]
    lines.append(
        f"Issued:       {issued['first']} first, {issued['renewal']} renewals since start; "
        f"{issued['issued']} recorded, {issued['unexpired']} unexpired"
    )
    lines += [f"Warning:      {w}" for w in body.get("warnings") or []]
    refusals = body.get("refusals") or {}
    lines.append(
        "Refused:      " + (", ".join(f"{k} {v}" for k, v in sorted(refusals.items())) or "none")
    )
    return "\n".join(lines) + "\n"


def _inspect(args: argparse.Namespace) -> int:
    from .ca._inspect import describe, render

    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        return _cli.fail(f"{args.file}: cannot read: {exc.strerror}")
    try:
        info = describe(data)
    except ValueError as exc:
        return _cli.fail(f"{args.file}: not a PEM certificate chain ({exc})")
    sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.output == "json" else render(info))
    return 0
