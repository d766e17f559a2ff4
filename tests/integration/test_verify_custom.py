"""verify proves a cluster unlike the reference one (clusters/custom.toml): three web servers,
another subnet, VIP, domain and port, names with dashes, renamed interfaces, wlc with
persistence and quiescent servers, heartbeat over mcast and ucast, and a gateway for ipfail.

Same images as the reference cluster, its own seeds; the core checks and the drills without
the fault matrix (that runs on the reference cluster), with drill i, which needs the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, assert_verified, run_verify

from imgbuild.model import load

pytestmark = pytest.mark.slow

CLUSTER = REPO / "tests" / "integration" / "clusters" / "custom.toml"


@pytest.fixture(scope="module")
def custom_report(images: Path, work: Path, test_env: dict[str, str]) -> dict[str, Any]:
    return run_verify(images, work / "seeds-custom", work / "reports", test_env, "--config", str(CLUSTER))


def test_custom_cluster_verifies(custom_report: dict[str, Any]) -> None:
    assert_verified(custom_report, set())


def test_every_node_and_drill_of_the_custom_cluster(custom_report: dict[str, Any]) -> None:
    model = load(CLUSTER)
    assert set(custom_report["boot_seconds"]) == {n.name for n in model.nodes}
    drills = {d["name"] for d in custom_report["drills"]}
    assert drills == {"a-power-loss-active", "e-planned-stop", "i-ping-node-lost", "f-power-loss-webserver"}, drills
    assert custom_report["measurements"]["spread"]["kind"] == "pinned"
