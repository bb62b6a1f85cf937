"""Group commit: certificates issued together share a ledger commit and are all kept.

Through the API, many sidecars asking at once all get certificates that the CA still
knows after a restart (each renews), and one token sent twice at once is honoured once.
On the ledger itself, the requests of one turn of the event loop share a commit, none
returns before its record can be read from another connection, an entry whose token was
spent already (in the same batch, or by another writer) leaves nothing while the rest
stay, and a batch that cannot be written keeps nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509

from plait.controlplane.ca import Entry, GroupCommit, LedgerUnavailable
from plait.controlplane.ca._ledger import Ledger
from plait.core.identity.proof import sign_renewal

from .conftest import ca_server, make_csr


def _renewal(key: Any, chain: str) -> dict[str, Any]:
    _, csr_pem = make_csr()
    now = int(time.time())
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    return {
        "csr": csr_pem,
        "renewal": {"chain": chain, "timestamp": now, "signature": sign_renewal(key, csr, now)},
    }


def test_certificates_issued_at_once_are_all_recorded_across_a_restart(tmp_path: Path) -> None:
    n = 24
    with ca_server(tmp_path / "data") as server:
        tokens = [server.token("shop", f"sa-{i}") for i in range(n)]
        keys_csrs = [make_csr() for _ in range(n)]

        def first(i: int) -> tuple[int, Any]:
            return server.certificate({"token": tokens[i], "csr": keys_csrs[i][1]})

        with ThreadPoolExecutor(n) as pool:  # each on its own connection, all at once
            answers = list(pool.map(first, range(n)))
        assert [status for status, _ in answers] == [200] * n, answers
        assert len({out["serial"] for _, out in answers}) == n
    with ca_server(tmp_path / "data") as server:
        for i, (_, out) in enumerate(answers):
            status, renewed = server.certificate(_renewal(keys_csrs[i][0], out["chain"]))
            assert status == 200, renewed
            assert renewed["spiffeId"] == f"spiffe://plait.local/ns/shop/sa/sa-{i}"
            status, again = server.certificate({"token": tokens[i], "csr": make_csr()[1]})
            assert (status, again["reason"]) == (403, "token_reused")


def _entry(i: int, token: str | None = None) -> Entry:
    leaf = (f"{i + 1:x}", f"spiffe://t/ns/a/sa/{i}", 1e12, "root", 0.0, "fp")
    return Entry((token, 1e12) if token is not None else None, leaf)


@pytest.mark.anyio
async def test_one_turn_shares_a_commit_answers_follow_it_and_a_reused_token_keeps_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    group = GroupCommit(ledger, lambda: 0.0)
    seen_at_answer: dict[int, bool] = {}
    refused: list[int] = []

    async def request(i: int) -> None:
        token = "token-3" if i == 7 else f"token-{i}"  # request 7 replays request 3's token
        if not await group.record(_entry(i, token)):
            refused.append(i)
            return
        with sqlite3.connect(path) as other:  # another reader sees it once answered
            row = other.execute("SELECT identity FROM leaves WHERE serial = ?", (f"{i + 1:x}",))
            seen_at_answer[i] = row.fetchone() is not None

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(request, i)
    assert refused == [7]
    assert seen_at_answer == {i: True for i in range(20) if i != 7}
    assert 1 <= ledger.commits < 20
    ledger.close()

    reopened = Ledger(path)
    try:
        assert reopened.counts(0.0)["issued"] == 19
        assert reopened.leaf(8) is None  # the refused request's leaf (serial 7 + 1)
        assert reopened.consume_token("token-7", 1e12, 0.0)  # never spent by request 7
        assert not reopened.consume_token("token-3", 1e12, 0.0)
    finally:
        reopened.close()


def test_two_writers_of_one_ledger_spend_a_token_once(tmp_path: Path) -> None:
    """Two connections (as two processes would have) race for one token: one keeps it."""
    path = tmp_path / "ledger.db"
    first, second = Ledger(path), Ledger(path)
    try:
        assert first.write([_entry(1, "shared"), _entry(2, "own")], 0.0) == [True, True]
        assert second.write([_entry(3, "shared"), _entry(4)], 0.0) == [False, True]
        assert second.leaf(4) is None and second.leaf(5) is not None
        assert first.counts(0.0)["issued"] == 3
    finally:
        first.close()
        second.close()


@pytest.mark.anyio
async def test_a_ledger_locked_elsewhere_refuses_the_batch_and_keeps_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, busy_timeout=0.1)
    group = GroupCommit(ledger, lambda: 0.0)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerUnavailable, match="could not be written"):
            await group.record(_entry(0, "token-0"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert ledger.leaf(1) is None
    assert await group.record(_entry(0, "token-0"))  # the token was not spent
    assert ledger.leaf(1) is not None
    ledger.close()


def test_a_locked_ledger_is_503_and_the_token_stays_usable(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data") as server:
        token = server.token("shop", "cart")
        other = sqlite3.connect(tmp_path / "data" / "ca" / "ledger.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock (5 s timeout)
        try:
            status, out = server.certificate({"token": token, "csr": make_csr()[1]})
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (status, out["reason"]) == (503, "ledger_unavailable"), out
        status, out = server.certificate({"token": token, "csr": make_csr()[1]})
        assert status == 200, out


def test_a_token_sent_twice_at_once_gets_one_certificate(tmp_path: Path) -> None:
    with ca_server(tmp_path / "data") as server:
        for round_ in range(3):
            token = server.token("shop", f"twice-{round_}")
            start = threading.Barrier(8)

            def post(_: int, token: str = token, start: threading.Barrier = start) -> Any:
                body = {"token": token, "csr": make_csr()[1]}
                start.wait()
                return server.certificate(body)

            with ThreadPoolExecutor(8) as pool:  # 8 connections, the same token
                answers = list(pool.map(post, range(8)))
            statuses = sorted(status for status, _ in answers)
            assert statuses == [200] + [403] * 7, answers
            assert all(out["reason"] == "token_reused" for status, out in answers if status != 200)
        assert server.status()["issued"]["first"] == 3
