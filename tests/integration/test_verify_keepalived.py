"""The same cluster with the keepalived stack: same images, its own seeds, `imgbuild verify`.

The core checks shared by both stacks run unchanged; heartbeat's own (heartbeat, ipfail,
ldirectord, authkeys) are swapped for keepalived's (VRRP states, the virtual server on both
balancers, its journal), and the fault matrix runs on it except drill d, which cuts one of
heartbeat's two paths: keepalived has one, the service network, and losing it is drill c.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, assert_verified, run_verify
from test_verify import checks_of

pytestmark = pytest.mark.slow

CLUSTER = REPO / "tests" / "integration" / "clusters" / "keepalived.toml"


@pytest.fixture(scope="module")
def keepalived_report(images: Path, work: Path, test_env: dict[str, str]) -> dict[str, Any]:
    return run_verify(
        images, work / "seeds-keepalived", work / "reports", test_env, "--config", str(CLUSTER), "--faults"
    )


def test_keepalived_cluster_verifies(keepalived_report: dict[str, Any]) -> None:
    assert_verified(keepalived_report, set())
    assert keepalived_report["stack"] == "keepalived"
    assert keepalived_report["measurements"]["spread"]["kind"] == "shared"  # sed: the load-based check


def test_keepalived_checks_swapped_in(keepalived_report: dict[str, Any]) -> None:
    ran = {c["check"].split("[")[0] for c in keepalived_report["checks"]}
    written = checks_of("keepalived", faults=True)
    assert ran == written, (sorted(written - ran), sorted(ran - written))
    assert {"test_vrrp_states", "test_virtual_server_on_both_balancers"} <= ran and not {
        "test_ipfail_running",
        "test_heartbeat_daemons",
    } & ran
    drills = {d["name"]: d for d in keepalived_report["drills"]}
    assert set(drills) == {
        "a-power-loss-active",
        "e-planned-stop",
        "f-power-loss-webserver",
        "b-second-failover-r1",
        "c-partition-active-r1",
        "g-hung-webserver-r1",
        "h-sync-daemon-lost-r1",
    }, set(drills)
