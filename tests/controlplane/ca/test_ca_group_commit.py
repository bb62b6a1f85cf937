"""Group commit: certificates issued together share a ledger commit and are all kept.

Through the API, many sidecars asking at once all get certificates that the CA still
knows after a restart (each renews). On the ledger itself, the requests of one turn of
the event loop share a commit, none returns before its record can be read from another
connection, and a request refused inside a batch leaves nothing while the rest stay.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509

from plait.controlplane.ca import GroupCommit, LedgerUnavailable
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


class _Refusal(Exception):
    pass


@pytest.mark.anyio
async def test_one_turn_shares_a_commit_answers_follow_it_and_a_refusal_keeps_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path)
    group = GroupCommit(ledger)
    seen_at_answer: dict[int, bool] = {}
    refused: list[int] = []

    def work(i: int) -> int:
        with ledger.transaction():
            assert ledger.consume_token(f"token-{i}", 1e12, 0.0)
            ledger.record_leaf(i + 1, f"spiffe://t/ns/a/sa/{i}", 1e12, "root", 0.0, "fp")
            if i == 7:
                raise _Refusal("refused after writing")
        return i

    async def request(i: int) -> None:
        try:
            await group.run(lambda: work(i))
        except _Refusal:
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
        assert reopened.consume_token("token-7", 1e12, 0.0)  # and its token is unspent
        assert not reopened.consume_token("token-3", 1e12, 0.0)
    finally:
        reopened.close()


@pytest.mark.anyio
async def test_a_ledger_locked_elsewhere_refuses_without_doing_the_work(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, busy_timeout=0.1)
    group = GroupCommit(ledger)
    done: list[int] = []

    def work() -> int:
        with ledger.transaction():
            ledger.record_leaf(1, "spiffe://t/ns/a/sa/b", 1e12, "root", 0.0, "fp")
        done.append(1)
        return 1

    other = sqlite3.connect(path, isolation_level=None)  # another process's writer
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(LedgerUnavailable, match="could not be written"):
            await group.run(work)
        assert done == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await group.run(work) == 1  # the next request opens a batch as usual
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
