"""The identity agent against a real control plane's CA on loopback (real HTTP).

Renewal timing is checked with an injected ``sleep`` that moves the CA's clock by the
time the agent asked to wait, so an hour-long certificate renews without waiting.
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest
from cryptography import x509

from plait.core.identity import CertStore
from plait.core.identity.agent import IdentityAgent, IdentityError, IdentityOptions
from plait.core.identity.bootstrap import ControlPlaneTrust
from tests.support import free_port
from tests.support.ca import ca_server

pytestmark = pytest.mark.anyio

CART = "spiffe://plait.local/ns/shop/sa/cart"


def _roots(store: CertStore) -> int:
    return len(x509.load_pem_x509_certificates(store.bundle_pem))


async def test_first_certificate_then_renewals_at_half_life_with_jitter(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data") as ca:
        store = CertStore()
        delays: list[float] = []
        serials: list[int] = []
        roots: list[int] = []
        opts = IdentityOptions(
            server=f"https://127.0.0.1:{ca.port}",
            token=ca.token("shop", "cart"),
            namespace="shop",
            service_account="cart",
        )

        async with anyio.create_task_group() as tg:

            async def sleep(seconds: float) -> None:
                assert store.leaf is not None and str(store.leaf.spiffe_id) == CART
                serials.append(store.leaf.serial)
                roots.append(_roots(store))
                delays.append(seconds)
                if len(delays) == 2:
                    assert ca.request("POST", "/api/v1/ca/rotate", {})[0] == 200
                if len(delays) == 4:
                    tg.cancel_scope.cancel()
                ca.clock.advance(seconds)
                await anyio.lowlevel.checkpoint()

            agent = IdentityAgent(
                store,
                opts,
                clock=lambda: ca.clock().timestamp(),
                sleep=sleep,
                rng=random.Random(7),
                trust=ca.trust(),
            )
            tg.start_soon(agent.run)
        assert all(0.4 * 3600 <= d <= 0.6 * 3600 for d in delays), delays
        assert len(set(delays)) == 4  # jittered, not all at the same moment
        assert len(set(serials)) == 4 and store.generation == 4
        assert roots == [1, 1, 2, 2]  # the bundle of the rotation arrives with the next renewal
        assert ca.status()["issued"]["renewal"] == 3


async def test_waits_for_an_unreachable_ca_with_backoff(tmp_path: Path) -> None:
    port = free_port()
    store = CertStore()
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await anyio.sleep(min(seconds, 0.05))

    with ca_server(tmp_path / "token-data", api_port=port) as ca:
        token = ca.token()
    opts = IdentityOptions(
        server=f"https://127.0.0.1:{port}", token=token, backoff=0.1, max_backoff=0.4
    )
    trust = ControlPlaneTrust(opts.server, bundle_file=tmp_path / "token-data" / "ca-bundle.pem")
    agent = IdentityAgent(store, opts, sleep=sleep, rng=random.Random(1), trust=trust)
    async with anyio.create_task_group() as tg:
        tg.start_soon(agent.run)
        with anyio.fail_after(10):
            while agent.failures < 5:
                await anyio.sleep(0.01)
        assert not store.ready
        with ca_server(tmp_path / "token-data", api_port=port):
            with anyio.fail_after(10):
                while not store.ready:
                    await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    backoff = delays[:5]
    assert backoff[0] < backoff[1] < backoff[2] and max(delays[:5]) <= 0.4 * 1.2, backoff


async def test_keeps_the_current_certificate_while_the_ca_is_down(tmp_path: Path) -> None:
    port = free_port()
    store = CertStore()

    async def sleep(seconds: float) -> None:
        await anyio.sleep(min(seconds, 0.05))  # renew at once, retry quickly

    async with anyio.create_task_group() as tg:
        with ca_server(tmp_path / "data", api_port=port) as ca:
            opts = IdentityOptions(
                server=f"https://127.0.0.1:{port}", token=ca.token(), backoff=0.05, max_backoff=0.1
            )
            agent = IdentityAgent(store, opts, sleep=sleep, trust=ca.trust())
            first = await tg.start(agent.run)
        failures = agent.failures
        with anyio.fail_after(10):
            while agent.failures < failures + 3:
                await anyio.sleep(0.01)
        assert store.leaf is not None and store.leaf.serial == first.serial
        assert store.client_context() is not None
        # what /certs and the metrics report: the failed renewals and why
        assert store.failures >= 3 and store.generation == 1
        assert store.last_error is not None and "unavailable" in store.last_error[1]
        assert store.source == "agent" and store.next_renewal is not None
        with ca_server(tmp_path / "data", api_port=port):
            with anyio.fail_after(10):
                while store.leaf.serial == first.serial:
                    await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert store.leaf is not None and store.leaf.spiffe_id == first.spiffe_id
    assert store.generation >= 2 and store.updated_at is not None


async def test_a_refused_join_token_stops_the_agent_with_the_reason(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data") as ca:
        opts = IdentityOptions(server=f"https://127.0.0.1:{ca.port}", token=ca.token())
        await IdentityAgent(CertStore(), opts, trust=ca.trust()).run_first()
        with pytest.raises(IdentityError, match="already used"):
            await IdentityAgent(CertStore(), opts, trust=ca.trust()).run()
        other = IdentityOptions(
            server=f"https://127.0.0.1:{ca.port}", token=ca.token(sa="web"), service_account="db"
        )
        refusal = r"bound to spiffe://plait\.local/ns/default/sa/web, presented for serviceAccount"
        with pytest.raises(IdentityError, match=refusal):
            await IdentityAgent(CertStore(), other, trust=ca.trust()).run()
