"""`imgbuild verify` end to end: images and seeds → running cluster → checks → report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.table import Table
from rich.text import Text

from imgbuild import state, ui
from imgbuild.builder import build as builder
from imgbuild.builder import mirror
from imgbuild.cloudinit import seeds as seeds_mod
from imgbuild.errors import UserError
from imgbuild.model import Cluster, Role
from imgbuild.paths import release_dir
from imgbuild.publish import output_dir
from imgbuild.qemu import accel as accel_mod
from imgbuild.qemu.command import require_qemu
from imgbuild.qemu.machine import NodeFailed
from imgbuild.run import logging_to
from imgbuild.verify import cluster as cluster_mod
from imgbuild.verify.run import Report, run_checks
from imgbuild.verify.timeline import report_html


def _kept_path(cluster: Cluster) -> Path:
    return state.cluster_dir(cluster.name) / "kept.json"


def down(cluster: Cluster) -> list[str]:
    path = _kept_path(cluster)
    if not path.exists():
        return []
    try:
        record = json.loads(state.read_private(path))
    except json.JSONDecodeError:
        raise UserError(
            f"{path} is not a kept record; stop its QEMUs and `ip netns delete` its namespace by hand, then remove it"
        ) from None
    cluster_mod.remove_kept(record)
    path.unlink()
    return [record["netns"], *record["nodes"]]


def prepare(cluster: Cluster, images: Path, seeds: Path) -> None:
    """Build what is missing or stale (a cache hit costs well under a second) and render the seeds."""
    b = cluster.build
    mirrors = mirror.resolve(b.release, b.mirror, b.security_mirror)
    builder.build_with_progress(list(Role), cluster, mirrors, images)
    seeds_mod.write_seeds(cluster, seeds)


def summary(report: Report) -> Table:
    table = Table(title=f"imgbuild verify ({report['release']}, {report['stack']}, {report['accel']})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("s", justify="right")
    for check in report["checks"]:
        colour = {"passed": "green", "failed": "red"}.get(check["outcome"], "yellow")
        table.add_row(Text(check["check"]), Text(check["outcome"], style=colour), f"{check['seconds']:.1f}")
    return table


def verify(
    cluster: Cluster,
    *,
    images: Path,
    seeds: Path,
    reports: Path,
    accel: str,
    memory_mb: int,
    cpus: int,
    ready_timeout: int,
    keyword: str | None,
    keep: bool,
    faults: bool = False,
    rounds: int = 1,
) -> Report:
    started = time.monotonic()
    if cluster.admin.ssh_keys:
        raise UserError("verify logs in with imgbuild's generated admin key; remove admin.ssh_keys for verify runs")
    require_qemu()
    chosen, reason = accel_mod.choose(accel)
    ui.err.print(f"accelerator: {chosen} ({reason})")
    if _kept_path(cluster).exists():
        raise UserError(f"a kept {cluster.name} cluster is still running; remove it with `imgbuild verify --down`")
    prepare(cluster, images, seeds)
    # absolute: the kept record and the QEMU command lines name it (`verify --down` checks both)
    report_dir = output_dir(reports).absolute() / time.strftime("verify-%Y%m%d-%H%M%S")
    report_dir.mkdir()
    ssh_key, _ = state.admin_key(cluster.name)
    report: Report = {
        "release": cluster.build.release,
        "stack": cluster.ha.stack,
        "accel": chosen,
        "accel_reason": reason,
        "report_dir": str(report_dir),
        "faults": faults,
        "rounds": rounds,
        # replaced by the checks' results; these stand when a node fails to boot
        "exit_code": 1,
        "checks": [],
        "measurements": {},
        "drills": [],
        "step_log": {"file": "", "commands": 0},
    }

    def keep_it(running: cluster_mod.RunningCluster) -> bool:
        if keep:
            state.write_private(_kept_path(cluster), json.dumps(cluster_mod.kept_record(running)).encode())
        return keep

    try:
        # every command verify runs (network, overlays, QEMU) goes to the report's commands.log
        with (
            logging_to(report_dir / "commands.log"),
            ui.progress([n.name for n in cluster.nodes]) as update,
            cluster_mod.running(
                cluster,
                images=release_dir(images, cluster.build.release),
                seeds=seeds,
                workdir=report_dir,
                ssh_key=ssh_key,
                accel=chosen,
                memory_mb=memory_mb,
                cpus=cpus,
                ready_timeout=ready_timeout,
                on_status=update,
                keep=keep_it,
            ) as running,
        ):
            report["boot_seconds"] = running.boot_seconds
            report["cluster_ready_seconds"] = running.ready_seconds
            ui.err.print(f"cluster ready in {running.ready_seconds:.0f} s: {running.boot_seconds}")
            report = {**report, **run_checks(running, report_dir, keyword, faults, rounds)}
            if keep:
                ui.err.print(
                    f"cluster kept: `ip netns exec {running.netns_name} ssh -i {ssh_key} {cluster.admin.user}@ADDRESS`"
                )
    except NodeFailed as err:
        report["checks"] = [{"check": "boot", "outcome": "failed", "seconds": 0, "detail": str(err)}]
        ui.error(str(err))
    report["total_seconds"] = round(time.monotonic() - started, 1)
    (report_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    html = report_html(report, report_dir)  # a timeline picture per drill, linked from one page
    ui.err.print(summary(report))
    ui.err.print(
        f"report: {report_dir}/report.json, {html.name}, JUnit: {report_dir}/junit.xml; total "
        f"{report['total_seconds']:.0f} s"
    )
    return report
