"""Filter chains → the plaintext chain and the inbound peer-authentication mode.

The inverse of the control plane's ``_encode_mtls`` (whose docstring gives the shapes and
why): one chain whose socket is an SDS ``DownstreamTlsContext`` requiring a client
certificate is STRICT; a ``tls`` and a ``raw_buffer`` chain with the same network filters
and the TLS inspector is PERMISSIVE; ``metadata.plait.mtls: DISABLE`` on a plaintext chain
is DISABLE; a plaintext chain alone is "no policy". Anything else (other matches, other
secret names, a second chain that differs, ...) is refused, naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.extensions.filters.listener.tls_inspector.v3 import (  # type: ignore[import-untyped]
    tls_inspector_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # type: ignore[import-untyped]

from plait.core.config import MtlsMode
from plait.core.config._fields import Loc

from ._decode_base import Message, fact, is_ads, only, sub, unpack
from .wire import (
    ALPN,
    MTLS_FACT,
    SDS_CERT,
    SDS_ROOTS,
    TLS_INSPECTOR,
    TRANSPORT_RAW,
    TRANSPORT_TLS,
)

__all__ = ["decode_chains", "is_mtls_socket"]


def is_mtls_socket(socket: Message) -> bool:
    """Whether a transport socket is the SDS mTLS one (not TLS from files)."""
    ctx = tls_pb2.DownstreamTlsContext()
    return bool(socket.typed_config.Unpack(ctx) and ctx.HasField("require_client_certificate"))


def _check_socket(socket: Message, loc: Loc) -> None:
    only(socket, ("name", "typed_config"), loc)
    ctx = unpack(socket.typed_config, tls_pb2.DownstreamTlsContext, loc)
    only(ctx, ("common_tls_context", "require_client_certificate"), loc)
    if not ctx.require_client_certificate.value:
        raise sub(loc, "require_client_certificate").expected("true", False)
    common = ctx.common_tls_context
    cloc = sub(loc, "common_tls_context")
    only(
        common,
        ("tls_certificate_sds_secret_configs", "validation_context_sds_secret_config",
         "alpn_protocols"),
        cloc,
    )  # fmt: skip
    if common.alpn_protocols and list(common.alpn_protocols) != list(ALPN):
        raise sub(cloc, "alpn_protocols").expected(", ".join(ALPN), list(common.alpn_protocols))
    certs = common.tls_certificate_sds_secret_configs
    if len(certs) != 1 or certs[0].name != SDS_CERT or not is_ads(certs[0].sds_config):
        raise sub(cloc, "tls_certificate_sds_secret_configs").error(
            f"expected one SDS secret {SDS_CERT!r} over ADS (the sidecar's own certificate)"
        )
    roots = common.validation_context_sds_secret_config
    if roots.name != SDS_ROOTS or not is_ads(roots.sds_config):
        raise sub(cloc, "validation_context_sds_secret_config").error(
            f"expected the SDS secret {SDS_ROOTS!r} over ADS (the trust bundle)"
        )


def decode_chains(
    msg: Message, facts: Mapping[str, Any], loc: Loc
) -> tuple[Message, MtlsMode | None]:
    """The chain to decode the network filter from, and the mode (``None``: no policy)."""
    chains = msg.filter_chains
    disable = fact(facts, MTLS_FACT, str, "", loc)
    if disable not in ("", MtlsMode.DISABLE.value):
        raise sub(loc, f"metadata.plait.{MTLS_FACT}").expected("DISABLE or absent", disable)
    if len(chains) == 2:
        return _permissive(msg, loc), MtlsMode.PERMISSIVE
    if len(chains) != 1:
        raise sub(loc, "filter_chains").expected("one or two filter chains", len(chains))
    if msg.listener_filters:
        raise sub(loc, "listener_filters").error("expected none with one filter chain")
    chain = chains[0]
    if chain.HasField("filter_chain_match"):
        raise sub(loc, "filter_chains[0].filter_chain_match").error("expected none")
    if chain.HasField("transport_socket") and is_mtls_socket(chain.transport_socket):
        _check_socket(chain.transport_socket, sub(loc, "filter_chains[0].transport_socket"))
        plain = type(chain)()
        plain.CopyFrom(chain)
        plain.ClearField("transport_socket")
        return plain, MtlsMode.STRICT
    return chain, MtlsMode.DISABLE if disable else None


def _permissive(msg: Message, loc: Loc) -> Message:
    tls, raw = msg.filter_chains
    for i, (chain, proto) in enumerate(((tls, TRANSPORT_TLS), (raw, TRANSPORT_RAW))):
        mloc = sub(loc, f"filter_chains[{i}].filter_chain_match")
        only(chain.filter_chain_match, ("transport_protocol",), mloc)
        if chain.filter_chain_match.transport_protocol != proto:
            raise sub(mloc, "transport_protocol").expected(
                proto, chain.filter_chain_match.transport_protocol
            )
    if not tls.HasField("transport_socket"):
        raise sub(loc, "filter_chains[0].transport_socket").error("expected the mTLS socket")
    _check_socket(tls.transport_socket, sub(loc, "filter_chains[0].transport_socket"))
    if raw.HasField("transport_socket"):
        raise sub(loc, "filter_chains[1].transport_socket").error("expected none (plaintext)")
    if list(tls.filters) != list(raw.filters):
        raise sub(loc, "filter_chains[1].filters").error(
            "expected the same network filters as filter_chains[0] (one listener, two transports)"
        )
    lf = msg.listener_filters
    if len(lf) != 1 or lf[0].name != TLS_INSPECTOR:
        raise sub(loc, "listener_filters").error(f"expected exactly {TLS_INSPECTOR}")
    only(lf[0], ("name", "typed_config"), sub(loc, "listener_filters[0]"))
    unpack(lf[0].typed_config, tls_inspector_pb2.TlsInspector, sub(loc, "listener_filters[0]"))
    plain = type(raw)()
    plain.CopyFrom(raw)
    plain.ClearField("filter_chain_match")
    return plain
