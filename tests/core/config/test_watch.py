"""What the static-mode file watcher (a stat poll, core/config/_watch.py) counts as a change."""

from __future__ import annotations

import os
from pathlib import Path

from plait.core.config._watch import config_stamp


def test_a_rewritten_file_changes_the_stamp(tmp_path: Path) -> None:
    f = tmp_path / "mesh.yaml"
    f.write_text("a: 1\n")
    before = config_stamp([f])
    f.write_text("a: 22\n")
    assert config_stamp([f]) != before


def test_a_directory_counts_its_yaml_files_only(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    before = config_stamp([tmp_path])
    (tmp_path / "notes.txt").write_text("not config\n")
    assert config_stamp([tmp_path]) == before
    (tmp_path / "b.yml").write_text("b: 1\n")
    assert config_stamp([tmp_path]) != before


def test_a_configmap_style_symlink_swap_is_a_change(tmp_path: Path) -> None:
    """Kubernetes updates a mounted ConfigMap by pointing a symlink at a new directory."""
    old, new = tmp_path / "..v1", tmp_path / "..v2"
    old.mkdir()
    new.mkdir()
    (old / "mesh.yaml").write_text("a: 1\n")
    (new / "mesh.yaml").write_text("a: 1\n")  # same size, new inode
    link = tmp_path / "..data"
    link.symlink_to(old.name)
    f = tmp_path / "mesh.yaml"
    f.symlink_to("..data/mesh.yaml")
    before = config_stamp([f])
    tmp = tmp_path / "..data_tmp"
    tmp.symlink_to(new.name)
    os.replace(tmp, link)
    assert config_stamp([f]) != before


def test_a_missing_file_is_a_state_not_an_error(tmp_path: Path) -> None:
    f = tmp_path / "gone.yaml"
    assert config_stamp([f]) == ((str(f), -1, -1, -1),)
