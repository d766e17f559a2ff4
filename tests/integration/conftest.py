"""Shared, expensive fixtures: the role images are built once per session (and cached by their inputs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imgbuild.builder.build import Manifest
from imgbuild.model import Cluster

REPO = Path(__file__).resolve().parents[2]
# The installed console script, as an operator runs it (`python -m imgbuild` works too).
IMGBUILD = [str(Path(sys.executable).parent / "imgbuild")]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (CI, timeout, kill) ends the run as Ctrl-C does: pytest then tears the fixtures down,
    so no QEMU, PXE server or namespace outlives it. Left alone, SIGTERM kills pytest outright."""
    signal.signal(signal.SIGTERM, _interrupt)


def run_imgbuild(
    *args: str, env: dict[str, str] | None = None, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IMGBUILD, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO, check=False
    )


def run_verify(images: Path, seeds: Path, reports: Path, test_env: dict[str, str], *flags: str) -> dict[str, Any]:
    """`imgbuild verify` on the images under `images.parent`: its JSON report, exit status and stderr's tail."""
    result = run_imgbuild(
        "verify",
        *flags,
        "--output",
        str(images.parent),
        "--seeds",
        str(seeds),
        "--reports",
        str(reports),
        "--json",
        env=test_env,
        timeout=2400,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    report["_exit"] = result.returncode
    report["_stderr"] = result.stderr[-4000:]
    return report


def assert_verified(report: dict[str, Any], skipped: set[str]) -> None:
    """verify passed: every check passed but the skipped ones named (each skip says why in its detail)."""
    failed = [c for c in report["checks"] if c["outcome"] not in ("passed", "skipped")]
    assert report["_exit"] == 0 and not failed, json.dumps(failed, indent=1) + report["_stderr"]
    skips = {c["check"].split("[")[0]: c["detail"] for c in report["checks"] if c["outcome"] == "skipped"}
    assert set(skips) == skipped, skips


@pytest.fixture(scope="session")
def work() -> Path:
    """Where integration tests keep images, seeds and state; reused across runs so builds can hit the cache."""
    path = Path(os.environ.get("IMGBUILD_TEST_WORK", REPO / "build" / "test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def test_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["IMGBUILD_STATE"] = str(work / "state")
    return env


@pytest.fixture(scope="session")
def images(work: Path, test_env: dict[str, str]) -> Path:
    """The default release's role images (`--output` is this directory's parent)."""
    out = work / "images"
    result = run_imgbuild("build", "--output", str(out), "--json", env=test_env)
    assert result.returncode == 0, result.stderr[-3000:]
    manifests: dict[str, Manifest] = json.loads(result.stdout)
    assert set(manifests) == {"loadbalancer", "webserver"}
    release: str = Cluster().build.release
    assert {m["release"] for m in manifests.values()} == {release}
    return out / release


@pytest.fixture(scope="session")
def seeds(work: Path, test_env: dict[str, str]) -> Path:
    out = work / "seeds"
    result = run_imgbuild("seed", "--seeds", str(out), env=test_env)
    assert result.returncode == 0, result.stderr
    return out
