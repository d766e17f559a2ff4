"""The root filesystems a build ships: the same tree gives the same bytes, and nothing of it is lost."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest

from imgbuild.builder import rootfs
from imgbuild.builder.reproducible import compare_trees, tree
from imgbuild.model import Build, Role

EPOCH = 1796253224
FS_UUID = uuid.UUID("0b5a6a0e-0000-4000-8000-000000000001")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mke2fs -d keeps owners and loop mounts need root")


def _tree(base: Path, names: list[str]) -> Path:
    """A small root, its files created in the given order (readdir order follows on tmpfs)."""
    (base / "etc").mkdir(parents=True)
    for name in names:
        (base / "etc" / name).write_text(name)
    (base / "usr" / "bin").mkdir(parents=True)
    (base / "usr" / "bin" / "ping").write_bytes(b"\x7fELF")
    os.setxattr(base / "usr" / "bin" / "ping", "user.imgbuild", b"cap")
    (base / "usr" / "bin" / "pong").hardlink_to(base / "usr" / "bin" / "ping")
    (base / "etc" / "localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    os.chown(base / "etc" / "b", 0, 42)
    return base


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clamp_sets_later_times_to_the_epoch_and_access_times_to_modification_times(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", ["a", "b"])
    os.utime(root / "etc" / "a", (2_000_000_000, 1_000_000_000))  # read after the epoch, written before
    rootfs.clamp_times(root, EPOCH)
    a, b = (root / "etc" / "a").stat(), (root / "etc" / "b").stat()
    assert (a.st_atime, a.st_mtime) == (1_000_000_000, 1_000_000_000)
    assert (b.st_atime, b.st_mtime) == (EPOCH, EPOCH)
    assert (root / "etc" / "localtime").lstat().st_mtime == EPOCH


@root_only
def test_the_same_tree_gives_the_same_ext4_and_squashfs(tmp_path: Path) -> None:
    letters = list("abcdefghijklmnop")
    first, second = _tree(tmp_path / "1", letters), _tree(tmp_path / "2", letters[::-1])
    for root in (first, second):
        time.sleep(1.1)  # other change times (the clamp sets them to now), which mke2fs copies
        rootfs.clamp_times(root, EPOCH)
        rootfs.ext4(root, root.with_suffix(".ext4"), 256 << 20, FS_UUID, EPOCH)
        rootfs.squashfs(root, root.with_suffix(".squashfs"), EPOCH)
    assert _sha(first.with_suffix(".ext4")) == _sha(second.with_suffix(".ext4"))
    assert _sha(first.with_suffix(".squashfs")) == _sha(second.with_suffix(".squashfs"))


@root_only
def test_the_ext4_holds_the_whole_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", ["a", "b"])
    rootfs.ext4(root, tmp_path / "root.ext4", 256 << 20, FS_UUID, EPOCH)
    with rootfs.mounted(tmp_path / "root.ext4") as mounted:
        inside = tree(mounted)
        hard_links = (mounted / "usr" / "bin" / "ping").stat().st_nlink
    inside.pop("/lost+found")
    assert compare_trees(tree(root), inside) == [] and hard_links == 2
    assert f" {mounted} " not in Path("/proc/mounts").read_text() and not mounted.exists(), "unmounted and removed"


def test_each_role_and_epoch_has_its_own_filesystem_uuid() -> None:
    uuids = {rootfs.root_uuid(role, Build(), epoch) for role in Role for epoch in (EPOCH, EPOCH + 1)}
    assert len(uuids) == 4 and rootfs.root_uuid(Role.webserver, Build(), EPOCH) in uuids
