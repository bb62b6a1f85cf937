"""The admin token: made once with mode 0600, kept, and refused when others can read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from plait.controlplane._token import TokenError, data_dir, ensure_token, read_token


def test_first_start_makes_a_private_token_and_later_starts_reuse_it(tmp_path: Path) -> None:
    d = tmp_path / "state"
    token = ensure_token(d)
    assert len(token) >= 40
    assert stat.S_IMODE((d / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert ensure_token(d) == token and read_token(d) == token


def test_a_token_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    ensure_token(tmp_path)
    (tmp_path / "admin-token").chmod(0o644)
    with pytest.raises(TokenError, match=r"mode 0644.*chmod 600"):
        ensure_token(tmp_path)


def test_no_token_file_means_no_token_for_the_cli(tmp_path: Path) -> None:
    assert read_token(tmp_path) is None


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_DATA_DIR", str(tmp_path / "env"))
    assert data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("PLAIT_DATA_DIR")
    assert data_dir() == Path.home() / ".plait"
