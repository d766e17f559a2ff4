"""The takeover fast path (run from harc when heartbeat declares a node dead) against a stub
LVSDirector: which groups it starts, and that a ping node or this node itself starts nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/usr/lib/imgbuild/takeover"
HA_CF = "keepalive 250ms\nnode loadb1\nnode loadb2\nping 192.168.0.1\n"
HARESOURCES = (
    "loadb1 LVSDirector::192.168.0.105/24/eth0/192.168.0.255::ldirectord.cf\n"
    "loadb2 LVSDirector::192.168.0.106/24/eth0/192.168.0.255::other.cf\n"
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    (tmp_path / "etc/ha.d/resource.d").mkdir(parents=True)
    (tmp_path / "etc/ha.d/ha.cf").write_text(HA_CF)
    (tmp_path / "etc/ha.d/haresources").write_text(HARESOURCES)
    stubs = {"bin/uname": "echo loadb2", "etc/ha.d/resource.d/LVSDirector": f'echo "$*" >> {tmp_path}/calls'}
    for rel, body in stubs.items():
        (tmp_path / rel).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / rel).chmod(0o755)
    return tmp_path


def takeover(root: Path, node: str) -> list[str]:
    env = {**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "IMGBUILD_ROOT": str(root)}
    result = subprocess.run([str(SCRIPT), node], env=env, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    calls = root / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("node", ["loadb1", "LOADB1"])
def test_a_dead_peer_starts_its_groups_and_ours(root: Path, node: str) -> None:
    assert takeover(root, node) == [
        "192.168.0.105/24/eth0/192.168.0.255 ldirectord.cf start",
        "192.168.0.106/24/eth0/192.168.0.255 other.cf start",
    ]


@pytest.mark.parametrize("node", ["192.168.0.1", "loadb2", "", "loadb"])
def test_no_takeover_for_a_ping_node_ourselves_or_a_stranger(root: Path, node: str) -> None:
    assert takeover(root, node) == []


PEERS = SCRIPT.parent / "peers.sh"


@pytest.mark.parametrize(
    ("ha_cf", "node", "peer"),
    [
        (HA_CF, "loadb1", True),
        (HA_CF, "loadb2", False),  # ourselves
        (HA_CF, "192.168.0.1", False),  # a ping node
        (HA_CF, "loadb", False),
        (HA_CF, "", False),
        ("node loadb2 loadb1\n", "loadb1", True),  # several nodes on one line
        ("#node loadb1\nnode loadb2\n", "loadb1", False),
    ],
)
def test_is_peer_is_ha_cf_membership(tmp_path: Path, ha_cf: str, node: str, peer: bool) -> None:
    """The one test takeover and mach_down share: which dead node moves resource groups."""
    (tmp_path / "etc/ha.d").mkdir(parents=True)
    (tmp_path / "etc/ha.d/ha.cf").write_text(ha_cf)
    env = {**os.environ, "IMGBUILD_ROOT": str(tmp_path)}
    result = subprocess.run(
        ["sh", "-c", f'. "{PEERS}"; is_peer "$1" loadb2', "sh", node], env=env, check=False, timeout=10
    )
    assert (result.returncode == 0) is peer
