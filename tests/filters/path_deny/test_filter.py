"""path-deny filter, driven through plait.sdk.testing."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.filters.path_deny import PATH_DENY, PathDeny, normalize_path, parse_path_deny
from plait.sdk.testing import DriveResult, check_filter, drive, make_request

RAW = {"paths": [{"value": "/admin"}], "body": "no\n"}


def _run(path: str, method: str = "GET") -> DriveResult:
    f = PathDeny(parse_path_deny(RAW))
    return anyio.run(lambda: drive(f, request_head=make_request(method, path), request_body=b"x"))


def test_denied_path_gets_a_local_reply_and_no_upstream() -> None:
    res = _run("/admin/users?x=1", "POST")
    assert res.local_reply is not None
    assert (res.status, res.local_reply.body, res.local_reply.reason) == (
        403,
        b"no\n",
        "denied by path policy",
    )
    assert res.reply_phase == "request" and not res.upstream_called
    assert res.calls == ["on_request_headers"]  # (the hooks it implements)


def test_other_paths_pass() -> None:
    res = _run("/adminx")
    assert res.local_reply is None and res.upstream_called and res.status == 200


@pytest.mark.parametrize(
    "path",
    ["//admin", "/x/../admin", "/./admin/", "/%61dmin", "/%2e%2e/admin", "/a/b/../../admin/x"],
)
def test_normalization_closes_bypasses(path: str) -> None:
    assert _run(path).status == 403


def test_encoded_slash_stays_encoded() -> None:
    assert normalize_path("/admin%2fx") == "/admin%2Fx"
    assert _run("/admin%2Fx").status == 200  # one segment "admin%2Fx", not under /admin


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a//b/", "/a/b/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/../../..", "/"),
        ("/%7Euser/%41", "/~user/A"),
        ("/a/%2E%2E/b", "/b"),
        ("/%zz", "/%zz"),
    ],
)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


def test_conformance() -> None:
    check_filter(PATH_DENY, RAW)
    assert PATH_DENY.stream_independent


@given(
    st.lists(st.sampled_from(["a", "b", ".", "..", "", "%61", "%2F", "%2e", "%2E%2e"]), max_size=8)
)
def test_normalized_paths_are_clean_and_stable(parts: list[str]) -> None:
    normal = normalize_path("/" + "/".join(parts))
    assert normal.startswith("/") and "//" not in normal
    assert not {".", ".."} & set(normal.split("/"))
    assert normalize_path(normal) == normal
