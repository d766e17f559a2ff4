"""The comparison behind `imgbuild build --check-reproducible`: what counts as the same tree."""

from __future__ import annotations

import os
from pathlib import Path

from imgbuild.builder.reproducible import compare_trees, differing_fields, tree


def _root(base: Path) -> Path:
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "hostname").write_text("image\n")
    (base / "etc" / "shadow").write_text("root:*:20789:0:99999:7:::\n")
    os.chmod(base / "etc" / "shadow", 0o640)
    (base / "boot").mkdir()
    (base / "boot" / "vmlinuz").symlink_to("vmlinuz-6.12")
    return base


def test_two_trees_with_the_same_content_are_identical_whatever_their_times(tmp_path: Path) -> None:
    a, b = _root(tmp_path / "a"), _root(tmp_path / "b")
    os.utime(b / "etc" / "hostname", (0, 0))  # times are not content
    assert compare_trees(tree(a), tree(b)) == []
    assert set(tree(a)) == {"/", "/etc", "/etc/hostname", "/etc/shadow", "/boot", "/boot/vmlinuz"}


def test_every_kind_of_difference_is_named(tmp_path: Path) -> None:
    a, b = _root(tmp_path / "a"), _root(tmp_path / "b")
    (b / "etc" / "shadow").write_text("root:*:20791:0:99999:7:::\n")  # same size, other bytes
    os.chmod(b / "etc" / "hostname", 0o600)
    (b / "boot" / "vmlinuz").unlink()
    (b / "boot" / "vmlinuz").symlink_to("vmlinuz-6.13")
    (a / "var").mkdir()
    (b / "etc" / "machine-id").write_text("")
    os.chown(b / "etc", 0, 42)
    assert compare_trees(tree(a), tree(b)) == [
        {"path": "/boot/vmlinuz", "differs": ["target"]},
        {"path": "/etc", "differs": ["gid"]},
        {"path": "/etc/hostname", "differs": ["mode"]},
        {"path": "/etc/machine-id", "differs": ["only in the rebuilt image"]},
        {"path": "/etc/shadow", "differs": ["sha256"]},
        {"path": "/var", "differs": ["only in the first image"]},
    ]


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    a = _root(tmp_path / "a")
    (a / "etc" / "passwd").symlink_to("/etc/passwd")  # the host's: must not be read
    entry = tree(a)["/etc/passwd"]
    assert entry.kind == "symlink" and entry.sha256 == "" and entry.target == "/etc/passwd"


def test_superblock_fields_that_differ() -> None:
    first = "Filesystem UUID:          1c2d\nDirectory Hash Seed:      aa\nBlock count:              2\n"
    second = "Filesystem UUID:          9f8e\nDirectory Hash Seed:      bb\nBlock count:              2\n"
    assert differing_fields(first, second) == ["Directory Hash Seed", "Filesystem UUID"]


def test_a_file_capability_is_content(tmp_path: Path) -> None:
    a, b = _root(tmp_path / "a"), _root(tmp_path / "b")
    os.setxattr(b / "etc" / "hostname", "user.imgbuild", b"\x01")  # as setcap writes security.capability
    assert compare_trees(tree(a), tree(b)) == [{"path": "/etc/hostname", "differs": ["xattrs"]}]
