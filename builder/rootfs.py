"""The root filesystems imgbuild ships, made again from diskimage-builder's finished image: the
ext4 (whole disk, direct boot, qcow2) and the PXE root's squashfs, the same bytes for the same tree.

dib's own ext4 is a kernel-mounted filesystem the tree was copied into: its UUID, hash seed, times
and block layout differ from build to build. mke2fs -d sorts each directory and, with a fixed UUID
and hash seed, E2FSPROGS_FAKE_TIME and every change time set afterwards, writes the same bytes for
the same tree; mksquashfs does with SOURCE_DATE_EPOCH. Both read dib's image after all of dib's
cleanup (apt lists, /tmp, the build's resolv.conf), so they hold exactly what dib's ext4 holds.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

from imgbuild.bootargs import ROOT_LABEL
from imgbuild.model import Build, Role
from imgbuild.run import run

# dib's mkfs options for an ext4 root (disk-image-create: "-i 4096 -J size=64").
EXT4_OPTIONS = ["-t", "ext4", "-i", "4096", "-J", "size=64"]
# zstd decompresses several times faster than dib's xz, which matters under emulation; level 6
# keeps the build quick (15, the default, cost a minute of CPU per role).
SQUASHFS_COMPRESSION = ["-comp", "zstd", "-Xcompression-level", "6"]
# A diskless node has its address from the kernel's ip= (scripts/http hands eth0 over clean):
# systemd-network-generator turns ip= into a .network file and systemd-networkd applies it, so only
# this root enables the two. cloud-init still writes the node's network configuration but must not
# bring eth0 up again (networkd already has: ifup fails with "Address already assigned"), nor grow
# the root, a RAM overlay; from cloud-init 23.4 both are recoverable errors (`cloud-init status` exits 2).
_UNITS = "/lib/systemd/system"
PXE_ONLY = [
    f"etc/systemd/system/sysinit.target.wants/systemd-network-generator.service s 777 0 0 "
    f"{_UNITS}/systemd-network-generator.service",
    f"etc/systemd/system/multi-user.target.wants/systemd-networkd.service s 777 0 0 {_UNITS}/systemd-networkd.service",
    "etc/cloud/cloud.cfg.d/91-imgbuild-pxe.cfg f 644 0 0 "
    "printf 'disable_network_activation: true\\nresize_rootfs: false\\n'",
]


class Timings(TypedDict):
    clamp_seconds: float  # setting times newer than SOURCE_DATE_EPOCH to it
    ext4_seconds: float  # mke2fs -d and the change times
    squashfs_seconds: float


def root_uuid(role: Role, build: Build, epoch: int) -> uuid.UUID:
    """The root filesystem's UUID (and hash seed): fixed by the inputs, so a rebuild writes the same
    bytes. Nothing mounts by it (fstab and the kernel command line use the label)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"imgbuild:{role.value}:{build.release}:{build.kernel}:{epoch}")


@contextmanager
def mounted(image: Path, *, writable: bool = False) -> Iterator[Path]:
    """An ext4 image mounted through a loop device for the length of the block; read-only without
    replaying the journal unless writable. Unmounted (and the loop device released) on any exit."""
    point = Path(tempfile.mkdtemp(prefix="imgbuild-rootfs-"))
    options = "loop,noatime" if writable else "loop,ro,noload"
    try:
        run(["mount", "-o", options, image, point], why=f"mounting {image}", hint="run as root")
        try:
            yield point
        finally:
            run(["umount", point], why=f"unmounting {point}")
    finally:
        point.rmdir()


def clamp_times(tree: Path, epoch: int) -> None:
    """No time in the tree later than epoch, and access times equal to modification times (what
    the build read is not content); mke2fs -d copies both."""
    for directory, dirs, files in os.walk(tree):
        for path in [Path(directory), *(Path(directory, name) for name in dirs + files)]:
            st = path.lstat()
            mtime = min(st.st_mtime_ns, epoch * 1_000_000_000)
            if (st.st_atime_ns, st.st_mtime_ns) != (mtime, mtime):
                os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def ext4(tree: Path, out: Path, size: int, fs_uuid: uuid.UUID, epoch: int) -> None:
    """An ext4 image of size bytes holding tree, with dib's options and the root's label."""
    out.unlink(missing_ok=True)
    with out.open("wb") as f:
        f.truncate(size)
    run(
        [
            "mke2fs",
            "-q",
            "-F",
            *EXT4_OPTIONS,
            "-L",
            ROOT_LABEL,
            "-U",
            str(fs_uuid),
            "-E",
            f"hash_seed={fs_uuid},root_owner=0:0",
            "-d",
            tree,
            out,
        ],
        env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch)),
        why="making the root filesystem",
        hint="install e2fsprogs and check the free space of the output directory",
    )
    _settle_change_times(out, epoch)


def _settle_change_times(image: Path, epoch: int) -> None:
    """mke2fs -d copies each file's change time, which no one can set on the tree it reads: set
    every inode's to epoch with debugfs, and the last write time that closing it stamps."""
    with mounted(image) as tree:
        inodes = {os.lstat(tree).st_ino} | {
            os.lstat(os.path.join(directory, name)).st_ino
            for directory, dirs, files in os.walk(tree)
            for name in dirs + files
        }
    script = "".join(f"set_inode_field <{inode}> ctime @{epoch}\n" for inode in sorted(inodes))
    run(
        ["debugfs", "-w", "-f", "-", image],
        input=script + f"set_super_value wtime @{epoch}\n",
        text=True,
        env=dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch)),
        why="fixing the root filesystem's change times",
        hint="install e2fsprogs",
    )


def squashfs(tree: Path, out: Path, epoch: int) -> None:
    """The PXE root: tree as a squashfs, with the units and settings only a diskless node needs."""
    options = ["-noappend", "-no-progress", "-quiet", "-reproducible", *SQUASHFS_COMPRESSION, "-wildcards"]
    pseudo = [arg for definition in PXE_ONLY for arg in ("-p", definition)]
    excluded = [arg for d in ("proc", "sys", "dev", "run", "tmp") for arg in ("-e", f"{d}/*")]
    run(
        ["mksquashfs", tree, out, *options, *pseudo, *excluded],
        env=dict(os.environ, SOURCE_DATE_EPOCH=str(epoch)),
        why="making the PXE root",
        hint="install squashfs-tools and check the free space of the output directory",
    )


def remake(dib_raw: Path, ext4_out: Path, squashfs_out: Path, fs_uuid: uuid.UUID, epoch: int) -> Timings:
    """Both root filesystems from dib's raw image (which is changed: its times are clamped)."""
    with mounted(dib_raw, writable=True) as tree:
        started = time.monotonic()
        clamp_times(tree, epoch)
        clamped = time.monotonic()
        ext4(tree, ext4_out, dib_raw.stat().st_size, fs_uuid, epoch)
        made = time.monotonic()
        squashfs(tree, squashfs_out, epoch)
        done = time.monotonic()
    return {
        "clamp_seconds": round(clamped - started, 2),
        "ext4_seconds": round(made - clamped, 2),
        "squashfs_seconds": round(done - made, 2),
    }
