"""Checks before a build: each failure is one line that says how to fix it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from imgbuild.errors import UserError
from imgbuild.run import run

# Host tools the pipeline calls, and the Debian package that brings each.
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "qemu-img": "qemu-utils",
    "sudo": "sudo",
    "debugfs": "e2fsprogs",
    "mkfs.ext4": "e2fsprogs",
    "losetup": "mount",
    "rsync": "rsync",
    "mksquashfs": "squashfs-tools",
    # the whole disk (builder/wholedisk.py)
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "grub-mkimage": "grub-common",
}
# GRUB's BIOS platform files for the whole disk (its UEFI loaders come signed, from the image).
HOST_FILES = {"/usr/lib/grub/i386-pc/boot.img": "grub-pc-bin"}
MIN_FREE_GIB = 6


def tool_path() -> str:
    """PATH with this interpreter's bin first, so disk-image-create from our venv is found."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/sbin:/usr/bin")])


def require_tools(tools: dict[str, str], files: dict[str, str] | None = None) -> None:
    """Every tool on PATH and every file present; else one line naming the packages to install."""
    path = tool_path() + os.pathsep + "/usr/sbin:/sbin"
    missing = {pkg for tool, pkg in tools.items() if shutil.which(tool, path=path) is None}
    missing |= {pkg for file, pkg in (files or {}).items() if not Path(file).is_file()}
    if missing:
        raise UserError(f"missing host tools; install them with: apt-get install {' '.join(sorted(missing))}")


def require_root() -> None:
    if os.geteuid() == 0:
        return
    if shutil.which("sudo") and run(["sudo", "-n", "true"], check=False).returncode == 0:
        return
    raise UserError("building images needs root: run as root or give this user password-less sudo")


def require_space(path: Path, gib: float = MIN_FREE_GIB) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    if free < gib:
        raise UserError(
            f"only {free:.1f} GiB free under {probe}; a build needs {gib} GiB: free space or pass --output elsewhere"
        )


def require_dib() -> None:
    if shutil.which("disk-image-create", path=tool_path()) is None:
        raise UserError("disk-image-create not found: install imgbuild with its dependencies (scripts/setup.sh)")
