"""req_resource, heartbeat's "get our group" step, against a stub ResourceManager: with auto_failback
off the group is taken directly (the package's self-addressed message was lost once), otherwise the
package's script runs as before."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/usr/lib/imgbuild/req_resource"
GROUP = "LVSDirector::192.168.0.105/24/eth0/192.168.0.255::ldirectord.cf"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc/ha.d").mkdir(parents=True)
    (tmp_path / "etc/ha.d/shellfuncs").write_text(
        f'HA_NOARCHBIN={tmp_path}/bin\nha_log() {{ echo "log $*" >> {tmp_path}/calls; }}\n'
    )
    for rel in ("bin/ResourceManager", "usr/share/heartbeat/req_resource.distrib"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        status = '[ "$1" != status ] || exit ${STATUS:-1}\n' if rel.startswith("bin") else ""
        (tmp_path / rel).write_text(f'#!/bin/sh\n{status}echo "{Path(rel).name} $*" >> {tmp_path}/calls\n')
        (tmp_path / rel).chmod(0o755)
    return tmp_path


def run(root: Path, **env: str) -> list[str]:
    result = subprocess.run(
        [str(SCRIPT), GROUP],
        env={**os.environ, "IMGBUILD_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert result.returncode == 0, result.stderr
    calls = root / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_auto_failback_off_takes_the_group_without_a_message(root: Path) -> None:
    calls = run(root, HA_NICEFAILBACK="yes")
    assert calls[-1] == f"ResourceManager takegroup {GROUP}"
    assert not any("req_resource.distrib" in c for c in calls)


def test_a_group_already_running_is_left_alone(root: Path) -> None:
    assert run(root, HA_NICEFAILBACK="yes", STATUS="0") == []


def test_auto_failback_on_runs_the_package_script(root: Path) -> None:
    assert run(root, HA_NICEFAILBACK="") == [f"req_resource.distrib {GROUP}"]
