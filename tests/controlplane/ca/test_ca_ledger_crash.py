"""A killed control plane keeps what it answered: tokens stay spent, leaves stay known.

A real ``plait control-plane`` process hands out certificates to sidecars asking at
once (their answers share ledger transactions), is killed with SIGKILL (no shutdown
path runs) and started again on the same data directory: every token that got a
certificate is refused as reused, every certificate handed out can be renewed (the
ledger recorded it), and a token that was never presented still works.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509

from plait.core.identity.proof import sign_renewal
from tests.support.ca import make_csr
from tests.support.controlplane import api_context, api_url, start_control_plane


def _post(url: str, path: str, body: Any, ctx: Any, admin: str | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if admin is not None:
        headers["authorization"] = f"Bearer {admin}"
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_killed_control_plane_still_refuses_spent_tokens_and_renews_issued_leaves(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    cp = start_control_plane(tmp_path, data_dir=data)
    try:
        url, ctx = api_url(cp), api_context(cp)
        admin = (data / "admin-token").read_text().strip()

        def token(sa: str) -> str:
            status, out = _post(url, "/api/v1/tokens", {"namespace": "shop",
                                "serviceAccount": sa}, ctx, admin)  # fmt: skip
            assert status == 201, out
            return str(out["token"])

        tokens = [token(f"sa-{i}") for i in range(12)]
        unused = token("never-presented")
        keys_csrs = [make_csr() for _ in tokens]

        def first(i: int) -> tuple[int, Any]:
            return _post(url, "/api/v1/certificates",
                         {"token": tokens[i], "csr": keys_csrs[i][1]}, ctx)  # fmt: skip

        with ThreadPoolExecutor(len(tokens)) as pool:
            answers = list(pool.map(first, range(len(tokens))))
        assert [status for status, _ in answers] == [200] * len(tokens), answers
    finally:
        cp.stop(signal.SIGKILL)
    assert cp.popen.returncode == -signal.SIGKILL

    cp = start_control_plane(tmp_path, data_dir=data)
    try:
        url, ctx = api_url(cp), api_context(cp)
        for i, (_, out) in enumerate(answers):
            status, again = _post(url, "/api/v1/certificates",
                                  {"token": tokens[i], "csr": make_csr()[1]}, ctx)  # fmt: skip
            assert (status, again.get("reason")) == (403, "token_reused"), again
            _, csr_pem = make_csr()
            now = int(time.time())
            proof = sign_renewal(keys_csrs[i][0], x509.load_pem_x509_csr(csr_pem.encode()), now)
            status, renewed = _post(url, "/api/v1/certificates", {"csr": csr_pem, "renewal": {
                "chain": out["chain"], "timestamp": now, "signature": proof}}, ctx)  # fmt: skip
            assert status == 200, renewed
            assert renewed["spiffeId"] == f"spiffe://plait.local/ns/shop/sa/sa-{i}"
        status, out = _post(url, "/api/v1/certificates",
                            {"token": unused, "csr": make_csr()[1]}, ctx)  # fmt: skip
        assert status == 200, out
    finally:
        cp.stop()
