"""Make a finished output appear at its path in one step, replacing the old one: every command
that writes a directory of outputs (images, seeds, the PXE tree) stages it with `staged`, and a
single shared file (a manifest, a report page) goes through `write_file`."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from imgbuild.errors import UserError
from imgbuild.state import private_dir

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(new: Path, current: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.renameat2(_AT_FDCWD, bytes(new), _AT_FDCWD, bytes(current), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(current))


def output_dir(path: Path, private: bool = False) -> Path:
    """An output directory (images, seeds, pxe, reports) to write into: made when missing, never
    a symlink (a `seeds` link to /etc once made root chmod /etc 0700); private: 0700, ours."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UserError(
            f"{path} is a symlink or not a directory; imgbuild writes only into real directories: remove it or pass "
            "another path"
        )
    if private:
        path.parent.mkdir(parents=True, exist_ok=True)
        return private_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish_dir(new: Path, final: Path) -> None:
    """Swap new into final atomically (renameat2 RENAME_EXCHANGE) and drop the old contents.

    Readers see either the old directory or the new one, never a mix; new must be
    on final's filesystem. A symlink at final is refused, never swapped out or followed.
    """
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        shutil.rmtree(new, ignore_errors=True)
        raise UserError(
            f"{final} is a symlink or not a directory; remove it, imgbuild replaces only its own directories"
        )
    if not final.exists():
        new.rename(final)
        return
    _exchange(new, final)
    shutil.rmtree(new)


@contextmanager
def staged(final: Path, mode: int = 0o700) -> Iterator[Path]:
    """A new directory beside final (mode: 0700 for secrets, 0755 to share) to write an output
    into: published over final when the block ends, removed when it fails, so nothing half-written
    ever sits at final. final's parent must exist (output_dir)."""
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        os.chmod(work, mode)
        yield work
        publish_dir(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def write_file(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a world-readable file under a temporary name beside path, then rename it into place,
    so a crash never leaves half a file. (Secrets: state.write_private.)"""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide it from whoever serves the directory
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def write_json(path: Path, data: object) -> None:
    """write_file of data as indented JSON (manifest, SBOM, reproducibility report)."""
    text = (json.dumps(data, indent=2) + "\n").encode()
    write_file(path, lambda out: out.write(text))
