"""Run the checks against a running cluster and turn the outcome into a report."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, TypedDict

import pytest

from imgbuild.qemu.steplog import StepLog
from imgbuild.verify.cluster import RunningCluster
from imgbuild.verify.plugin import ClusterPlugin

CHECKS = Path(__file__).with_name("test_cluster.py")


def write_ssh_config(cluster: RunningCluster, path: Path) -> None:
    path.write_text(
        "Host *\n"
        f"  User {cluster.model.admin.user}\n"
        f"  IdentityFile {cluster.ssh_key}\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n"
    )


class StepLogRecord(TypedDict):
    file: str  # steps.jsonl in the report directory
    commands: int


class CheckResults(TypedDict):
    """What the checks add to verify's report."""

    exit_code: int  # pytest's
    checks: list[dict[str, Any]]  # check, outcome, seconds, detail, commands (in the step log)
    measurements: dict[str, Any]  # figures the checks measured (vip_moved_s, spread, ...)
    drills: list[dict[str, Any]]  # each drill's figures, bound and timeline (imgbuild.verify.drill)
    step_log: StepLogRecord


class Report(CheckResults, total=False):
    """report.json and `imgbuild verify --json`: the run, the boot and the checks' results. The
    boot's keys are missing when a node failed to boot, the checks' keys never are."""

    release: str
    stack: str
    accel: str
    accel_reason: str
    report_dir: str
    faults: bool
    rounds: int
    boot_seconds: dict[str, float]  # node -> boot to ready
    cluster_ready_seconds: float
    total_seconds: float


def run_checks(
    cluster: RunningCluster, report_dir: Path, keyword: str | None = None, faults: bool = False, rounds: int = 1
) -> CheckResults:
    write_ssh_config(cluster, report_dir / "ssh_config")  # for an operator reaching a kept cluster
    steps = StepLog(report_dir / "steps.jsonl")
    for machine in cluster.machines.values():
        machine.step_log = steps
    plugin = ClusterPlugin(cluster, report_dir, faults, rounds, steps)
    args = [
        str(CHECKS),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:pytest11.testinfra",
        "-p",
        "imgbuild.verify.plugin",
        "-q",
        "--no-header",
        "-rN",
        "-c",
        "/dev/null",
        f"--rootdir={CHECKS.parent}",
        f"--junitxml={report_dir / 'junit.xml'}",
        "-o",
        "junit_suite_name=imgbuild-verify",
        "-W",
        "ignore",
    ]
    if keyword:
        args += ["-k", keyword]
    # pytest reports on stdout; keep stdout for the --json report.
    with contextlib.redirect_stdout(sys.stderr):
        exit_code = pytest.main(args, plugins=[plugin])
    return {
        "exit_code": int(exit_code),
        "checks": plugin.results,
        "measurements": plugin.measurements,
        "drills": plugin.drills,
        "step_log": {"file": steps.path.name, "commands": steps.count},
    }
