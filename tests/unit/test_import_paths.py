"""The checkout's root on sys.path (`python -m pytest`, `python -m imgbuild` from the root) changes
nothing: its qemu/ folder, installed as `imgbuild.qemu`, does not hide the qemu.qmp library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """The venv's python run from the checkout's root, which `-c` and `-m` put first on sys.path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120
    )


def test_qmp_library_and_imgbuild_qemu_import_from_the_root() -> None:
    script = (
        "import qemu, qemu.qmp.legacy, imgbuild.qemu.machine\nprint(qemu.__file__)\nprint(qemu.qmp.legacy.__file__)"
    )
    result = _python("-c", script)
    assert result.returncode == 0, result.stderr
    shim, library = result.stdout.splitlines()
    # The shadowing case was exercised: top-level `qemu` is the checkout's folder ...
    assert Path(shim).resolve() == ROOT / "qemu" / "__init__.py"
    # ... and qemu.qmp still comes from the installed library.
    assert not Path(library).resolve().is_relative_to(ROOT / "qemu")


def test_checkout_modules_are_not_a_second_top_level_copy() -> None:
    result = _python("-c", "import qemu.machine")
    assert result.returncode != 0 and "No module named 'qemu.machine'" in result.stderr


def test_python_m_imgbuild_from_the_root() -> None:
    result = _python("-m", "imgbuild", "--help")
    assert result.returncode == 0, result.stderr
    assert "python -m imgbuild" in result.stdout
