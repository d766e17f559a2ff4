"""The whole proof: `imgbuild verify` boots the four-node cluster once and every check runs against it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_verified, run_verify

from imgbuild.qemu import netns

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def namespaces_before() -> set[str]:
    """imgbuild namespaces of other runs (a kept cluster) that are not this test's to judge."""
    return set(netns.existing())


@pytest.fixture(scope="module")
def verify_report(
    images: Path, seeds: Path, work: Path, test_env: dict[str, str], namespaces_before: set[str]
) -> dict[str, Any]:
    """One boot runs the core checks and one round of the full fault matrix (issue 14: CI runs both)."""
    return run_verify(images, seeds, work / "reports", test_env, "--faults")


# The reference cluster has no gateway, so no ping node for ipfail to act on (drill i).
REFERENCE_SKIPS = {"test_drill_ping_node_lost"}


def test_verify_passes(verify_report: dict[str, Any]) -> None:
    assert_verified(verify_report, REFERENCE_SKIPS)


def checks_of(stack: str, faults: bool) -> set[str]:
    """The checks written in test_cluster.py for the stack (and the fault matrix's drills with
    faults), read from its source: the list cannot go stale."""
    spec = importlib.util.find_spec("imgbuild.verify.test_cluster")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    checks = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            marks = {ast.unparse(d.func if isinstance(d, ast.Call) else d): d for d in node.decorator_list}
            stack_mark = marks.get("pytest.mark.stack")
            if (stack_mark is None or _stack_of(stack_mark) == stack) and (faults or "pytest.mark.faults" not in marks):
                checks.add(node.name)
    return checks


def _stack_of(mark: ast.expr) -> object:
    """The stack a `@pytest.mark.stack("...")` decorator names."""
    assert isinstance(mark, ast.Call) and isinstance(mark.args[0], ast.Constant), ast.unparse(mark)
    return mark.args[0].value


def test_every_required_check_ran(verify_report: dict[str, Any]) -> None:
    written = checks_of("heartbeat", faults=True)
    ran = {c["check"].split("[")[0] for c in verify_report["checks"]}
    assert len(written) >= 25 and written == ran, (sorted(written - ran), sorted(ran - written))


def test_report_files_and_figures(verify_report: dict[str, Any]) -> None:
    report_dir = Path(verify_report["report_dir"])
    suite = ET.parse(report_dir / "junit.xml").getroot()
    testsuite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    assert testsuite is not None
    assert int(testsuite.attrib["tests"]) >= 20
    assert set(verify_report["boot_seconds"]) == {"webserver1", "webserver2", "loadb1", "loadb2"}
    measured = verify_report["measurements"]
    for figure in (
        "failover_outage_s",
        "vip_moved_s",
        "apache_down_detected_s",
        "spread",
        "webserver_out_of_rotation_s",
    ):
        assert figure in measured, figure
    drills = {d["name"]: d for d in verify_report["drills"]}
    matrix = {
        "a-power-loss-active",
        "e-planned-stop",
        "f-power-loss-webserver",
        "b-second-failover-r1",
        "c-partition-active-r1",
        "d-heartbeat-path-lost-r1",
        "g-hung-webserver-r1",
        "h-sync-daemon-lost-r1",
    }
    assert set(drills) == matrix, set(drills)
    for name, drill in drills.items():
        # the client ran at 20 Hz for the whole drill: figures at 50 ms resolution
        starts = sorted(r[0] for r in drill["requests"] if r[4] == "new")
        assert len(starts) >= 20 * (starts[-1] - starts[0]) * 0.8, (name, len(starts))
        assert {r[4] for r in drill["requests"]} >= {"new", "keepalive-0", "keepalive-3"}, name
        assert (report_dir / f"drill-{name}.png").stat().st_size > 5000
        assert f'src="drill-{name}.png"' in (report_dir / "report.html").read_text()
        assert drill["ha_log"], f"{name}: no balancer's heartbeat log kept"
    assert (report_dir / "loadb1.console.log").stat().st_size > 0


def test_nothing_left_behind(verify_report: dict[str, Any], namespaces_before: set[str]) -> None:
    assert (
        subprocess.run(
            ["pgrep", "-f", "qemu-system.*imgbuild|qemu-system.*reports/verify-"], capture_output=True, check=False
        ).returncode
        == 1
    )
    assert set(netns.existing()) <= namespaces_before
    assert not list(Path(verify_report["report_dir"]).glob("*.qcow2"))
