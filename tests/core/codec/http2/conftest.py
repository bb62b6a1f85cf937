"""Every test module here that uses ``H2Codec`` runs against both HTTP/2 connections under
the codec: ``h2`` (the reference) and plait's own (``native``). The module's ``H2Codec``
name is bound to the codec of the run, so the tests read as written for one codec."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.core.codec import H2Codec
from plait.core.codec.http2.native import NativeH2Codec

IMPLEMENTATIONS = {"h2": H2Codec, "native": NativeH2Codec}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if getattr(metafunc.module, "H2Codec", None) is not None:
        metafunc.parametrize("h2_impl", list(IMPLEMENTATIONS), indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def h2_impl(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Module-scoped (hypothesis refuses function-scoped fixtures under ``@given``)."""
    name: str | None = getattr(request, "param", None)
    if name is None:  # a module without H2Codec
        yield None
        return
    module = request.module
    module.H2Codec = IMPLEMENTATIONS[name]
    try:
        yield name
    finally:
        module.H2Codec = H2Codec
