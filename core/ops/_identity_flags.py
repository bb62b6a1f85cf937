"""The sidecar's identity flags: ``--join-token`` and ``--ca-server`` (docs/identity.md).

With a join token the sidecar runs the identity agent (``core/identity/agent.py``): the
token (``--join-token`` or ``$PLAIT_JOIN_TOKEN``; the variable keeps it out of ``ps``)
buys the first certificate from the CA at ``--ca-server`` (``$PLAIT_CA_SERVER``, else
port 15014 of the ``--control-plane`` host, over HTTPS). The token is single use, so it
cannot be shared by ``--workers`` processes: that combination is refused.

The control plane's ports are TLS: ``--ca-bundle FILE`` (``$PLAIT_CA_BUNDLE``) gives the
roots that verify it, else the join token's pin does (``core/identity/bootstrap.py``);
control-plane mode or a join token without either is refused at start. Its TLS xDS port
requires a client certificate, the sidecar's identity (from the join token, or
``--identity-*`` files the control plane's CA issued): control-plane mode without one is
refused at start unless ``--xds-plaintext`` says that ``--control-plane`` is the control
plane's plaintext xDS port (``--xds-plaintext-port``), which needs no roots. A sidecar with a
join token, or one registering a Workload with an identity from files, has a mesh identity
and uses the TLS port: those combinations are refused too (the control plane would refuse
the claim on its plaintext port).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..identity.agent import IdentityOptions
    from ..identity.bootstrap import ControlPlaneTrust

__all__ = [
    "add_identity_flags",
    "ca_server_url",
    "control_plane_trust",
    "identity_options",
    "identity_refusal",
]

CA_PORT = 15014


def add_identity_flags(parser: argparse.ArgumentParser) -> None:
    i = parser.add_argument_group("mesh identity (a certificate from the control plane's CA)")
    i.add_argument("--join-token", default=os.environ.get("PLAIT_JOIN_TOKEN"),
                   help="from `plait workload token` (default $PLAIT_JOIN_TOKEN)")  # fmt: skip
    i.add_argument("--ca-server", default=os.environ.get("PLAIT_CA_SERVER"), metavar="URL",
                   help="the CA's API (default $PLAIT_CA_SERVER, else https on port 15014 of "
                   "the --control-plane host)")  # fmt: skip
    i.add_argument("--ca-bundle", default=os.environ.get("PLAIT_CA_BUNDLE"), metavar="FILE",
                   help="roots that verify the control plane (its <data-dir>/ca-bundle.pem; "
                   "default $PLAIT_CA_BUNDLE, else the join token's pin)")  # fmt: skip


def identity_refusal(args: argparse.Namespace) -> str | None:
    """Why these flags cannot run together, or ``None``."""
    if args.join_token and args.workers > 1:
        return ("--join-token with --workers > 1 is not supported: the token is single use "
                "and each worker would need a certificate; run one worker")  # fmt: skip
    if args.join_token and (args.identity_cert or args.identity_key or args.trust_bundle):
        return ("--join-token and --identity-cert/--identity-key/--trust-bundle are two "
                "sources of one identity: give one of them")  # fmt: skip
    if args.join_token and not (args.ca_server or args.control_plane):
        return "--join-token needs --ca-server URL (or --control-plane)"
    plaintext = bool(args.control_plane and args.xds_plaintext)
    if args.xds_plaintext and not args.control_plane:
        return "--xds-plaintext goes with --control-plane (the control plane's plaintext port)"
    if plaintext and args.join_token:
        return ("--xds-plaintext with --join-token: a sidecar with a mesh identity gets "
                "its config from the TLS xDS port, with its certificate")  # fmt: skip
    if plaintext and args.identity_cert and args.service:
        return ("--xds-plaintext with --identity-* and --service: a Workload with a mesh "
                "identity registers over the TLS xDS port, with its certificate")  # fmt: skip
    if args.control_plane and not plaintext and not (args.join_token or args.identity_cert):
        return (
            "the control plane's TLS xDS port requires a client certificate: give --join-token "
            "(from `plait workload token`), or --xds-plaintext with the address of its "
            "plaintext xDS port (plait control-plane --xds-plaintext-port PORT)"
        )
    if (args.join_token or (args.control_plane and not plaintext)) and not args.ca_bundle:
        from ..identity.bootstrap import token_pin

        if not (args.join_token and token_pin(args.join_token)):
            return (
                "the control plane's TLS ports need its roots: give --ca-bundle FILE (its "
                "<data-dir>/ca-bundle.pem) or a join token from it (which pins its root)"
            )
    return None


def control_plane_trust(args: argparse.Namespace) -> ControlPlaneTrust | None:
    """What verifies the control plane: ``--ca-bundle``, else the join token's pin (``None``:
    no TLS to it, no join token and ``--xds-plaintext``)."""
    if not (args.join_token or (args.control_plane and not args.xds_plaintext)):
        return None
    from pathlib import Path

    from ..identity.bootstrap import ControlPlaneTrust, TrustError, token_pin

    try:
        if args.ca_bundle:
            return ControlPlaneTrust(_ca_server(args), bundle_file=Path(args.ca_bundle))
    except TrustError as exc:
        raise SystemExit(f"plait sidecar: {exc}") from None
    return ControlPlaneTrust(_ca_server(args), pin=token_pin(args.join_token or ""))


def ca_server_url(args: argparse.Namespace) -> str:
    """The control plane's API: ``--ca-server``, else https on port 15014 of the
    ``--control-plane`` host (also where pushed configs' wasm modules are fetched)."""
    return _ca_server(args)


def _ca_server(args: argparse.Namespace) -> str:
    if args.ca_server:
        return str(args.ca_server)
    host = args.control_plane.rpartition(":")[0] or args.control_plane
    return f"https://{host}:{CA_PORT}"


def identity_options(args: argparse.Namespace) -> IdentityOptions | None:
    if not args.join_token:
        return None
    from ..identity.agent import IdentityOptions

    return IdentityOptions(server=_ca_server(args), token=args.join_token,
                           service_account=args.service_account)  # fmt: skip
