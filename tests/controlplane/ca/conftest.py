"""The CA tests' server: an in-process control plane (``tests/support/ca.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ca import CAServer, Clock, ca_server, key_pem, make_csr

__all__ = ["CAServer", "Clock", "ca_server", "key_pem", "make_csr"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CAServer]:
    with ca_server(tmp_path / "data") as srv:
        yield srv
