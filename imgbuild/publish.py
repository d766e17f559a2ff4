"""Make a finished output directory appear at its path in one step, replacing the old one."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(new: Path, current: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.renameat2(_AT_FDCWD, bytes(new), _AT_FDCWD, bytes(current), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(current))


def publish_dir(new: Path, final: Path) -> None:
    """Swap new into final atomically (renameat2 RENAME_EXCHANGE) and drop the old contents.

    Readers see either the old directory or the new one, never a mix; new must be
    on final's filesystem.
    """
    if not final.exists():
        new.rename(final)
        return
    _exchange(new, final)
    shutil.rmtree(new)
