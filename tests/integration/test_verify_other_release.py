"""The release that is not the default (bookworm while trixie is) keeps building and verifying.

The rest of the suite (build, seeds, PXE, whole disk, the fault matrix) runs on the default
release; here the other release's images are built next to them and `imgbuild verify` boots
them with the same cluster and seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import assert_verified, run_imgbuild, run_verify
from test_verify import REFERENCE_SKIPS

from imgbuild.model import RELEASES, Cluster

pytestmark = pytest.mark.slow

OTHER = next(r for r in RELEASES if r != Cluster().build.release)


@pytest.fixture(scope="module")
def other_images(images: Path, test_env: dict[str, str]) -> Path:
    result = run_imgbuild("build", "--release", OTHER, "--output", str(images.parent), "--json", env=test_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {m["release"] for m in json.loads(result.stdout).values()} == {OTHER}
    return images.parent / OTHER


def test_other_release_verifies(other_images: Path, seeds: Path, work: Path, test_env: dict[str, str]) -> None:
    report = run_verify(other_images, seeds, work / "reports", test_env, "--release", OTHER)
    assert_verified(report, REFERENCE_SKIPS)
    assert report["release"] == OTHER and len(report["checks"]) >= 25
