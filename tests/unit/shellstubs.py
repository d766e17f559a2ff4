"""Stub commands for the tests that run the images' shell scripts here: each stub logs its call
to $S/calls before its body runs, so a test reads back which commands a script issued, in order."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

# For scripts that call what they need by absolute path (/usr/lib/imgbuild/..., /etc/ha.d/...):
# they run in a private mount namespace with the scratch files mounted there.
private_mounts = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="private mounts need root and unshare"
)


def write_stubs(root: Path, stubs: Mapping[str, str]) -> None:
    """Each stub at root/NAME (root/bin/NAME for a bare name): logs "NAME ARGS", then runs its body."""
    for name, body in stubs.items():
        path = root / name if "/" in name else root / "bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'#!/bin/sh\necho "{path.name} $*" >> "$S/calls"\n{body}\n')
        path.chmod(0o755)


def stub_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a script under test: root/bin first on PATH, and S=root for the stubs."""
    return {**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "S": str(root), **extra}


def calls(root: Path) -> list[str]:
    """The stubs' calls so far, in order."""
    log = root / "calls"
    return log.read_text().splitlines() if log.exists() else []
