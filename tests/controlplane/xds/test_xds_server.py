"""The ADS server as a process component: TLS on its port, and a port it cannot bind."""

from __future__ import annotations

import grpc
import pytest
import trustme

from plait.controlplane.xds import CLUSTER, AdsServer, MemorySource

from .xds_harness import SotwClient, mesh, names_in, running

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("one_event_loop")]


async def test_serves_over_tls() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_creds = grpc.ssl_server_credentials(
        [(cert.private_key_pem.bytes(), cert.cert_chain_pems[0].bytes())]
    )
    client_creds = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    source = MemorySource()
    mesh(source)
    async with running(source, credentials=server_creds) as target:
        channel = grpc.aio.secure_channel(
            target, client_creds, options=[("grpc.ssl_target_name_override", "localhost")]
        )
        async with SotwClient(target, channel) as client:
            assert names_in(await client.get(CLUSTER)) == ["a", "b"]
        await channel.close()
        plain = grpc.aio.insecure_channel(target)  # a plain-text client gets nothing
        async with SotwClient(target, plain) as client:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await client.send(CLUSTER)
                await client.recv()
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        await plain.close()


async def test_a_port_in_use_fails_the_start() -> None:
    source = MemorySource()
    async with running(source) as target:
        port = int(target.rsplit(":", 1)[1])
        with pytest.raises(RuntimeError, match="Failed to bind"):
            await AdsServer(source).serve("127.0.0.1", port)  # no SO_REUSEPORT sharing
