"""Benchmarks (not timed tests): build against plain diskimage-builder, and the cluster boot/verify figures.

    .venv/bin/python bench/run.py build [--release R]...   # -> bench/results/build.json, per release
    .venv/bin/python bench/run.py verify [--release R]... [reports/verify-*/report.json...]   # -> verify.json, per release
    .venv/bin/python bench/run.py deploy [build/test]   # -> bench/results/deploy.json, from the test suite's run
    .venv/bin/python bench/run.py faults [--release R] [ROUNDS | reports/verify-*/report.json]   # -> faults.json

Without --release, build and verify measure every release and faults the default one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imgbuild.builder import mirror, preflight
from imgbuild.model import RELEASES, Cluster

RESULTS = Path(__file__).parent / "results"
IMGBUILD = [str(Path(sys.executable).parent / "imgbuild")]
DEFAULT_RELEASE = Cluster().build.release
PLAIN_PACKAGES = "heartbeat,ldirectord,ipvsadm,apache2,cloud-init,ifupdown"


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as out:
        subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return round(time.monotonic() - started, 1)


def bench_build(scratch: Path, release: str) -> dict:
    """Both roles cold and from the cache, against a plain diskimage-builder image of the same release."""
    scratch = scratch / release
    scratch.mkdir()
    mirrors = mirror.resolve(release)
    env = dict(os.environ, PATH=preflight.tool_path(), DIB_RELEASE=release, DIB_DISTRIBUTION_MIRROR=mirrors.main,
               DIB_DEBIAN_SECURITY_MIRROR=mirrors.security, DIB_IMAGE_CACHE=str(scratch / "plain-cache"))  # fmt: skip
    plain_out = scratch / "plain" / "image"
    plain_out.parent.mkdir()
    plain = timed(["disk-image-create", "-a", "amd64", "-o", str(plain_out), "-t", "qcow2",
                   "debian-minimal", "baremetal", "openssh-server", "-p", PLAIN_PACKAGES], env, scratch / "plain.log")  # fmt: skip
    ours_env = dict(os.environ, IMGBUILD_CACHE=str(scratch / "imgbuild-cache"))
    out = scratch / "images"
    ours = [*IMGBUILD, "build", "--release", release, "--output", str(out)]
    cold = timed(ours, ours_env, scratch / "imgbuild-cold.log")
    hit = timed(ours, ours_env, scratch / "imgbuild-hit.log")
    plain_qcow2 = plain_out.with_suffix(".qcow2").stat().st_size
    sizes = {role: (out / release / role / f"{role}.qcow2").stat().st_size for role in ("loadbalancer", "webserver")}
    return {
        "plain_dib_build_s": plain,
        "imgbuild_both_roles_cold_s": cold,
        "cold_ratio_to_plain": round(cold / plain, 2),
        "cache_hit_s": hit,
        "plain_qcow2_bytes": plain_qcow2,
        "qcow2_bytes": sizes,
        "qcow2_ratio_to_plain": {role: round(size / plain_qcow2, 3) for role, size in sizes.items()},
        "targets": {"cold_ratio_to_plain": 1.5, "cache_hit_s": 2.0, "qcow2_ratio_to_plain": 0.6},
    }


def verify_report(existing: Path | None, *args: str) -> dict:
    """The report.json of a run that already happened (e.g. the test suite's), or of `imgbuild verify *args`."""
    if existing:
        return json.loads(existing.read_text())
    return json.loads(subprocess.run([*IMGBUILD, "verify", *args, "--json"], capture_output=True, text=True).stdout)


def bench_verify(scratch: Path, release: str, existing: Path | None) -> dict:
    report = verify_report(existing, "--release", release, "--reports", str(scratch / "reports"))
    return {
        "report_dir": report.get("report_dir"),
        "exit_code": report["exit_code"],
        "accel": report["accel"],
        "boot_to_ready_s": report.get("boot_seconds"),
        "cluster_ready_s": report.get("cluster_ready_seconds"),
        "verify_total_s": report["total_seconds"],
        "measurements": report.get("measurements"),
        "drills": {d["name"]: {"bound_s": d["bound_s"], "passed": d["passed"], **d["figures"]} for d in report.get("drills", [])},
        "targets": {"cluster_ready_s": 120, "verify_total_s": 300, "failover_outage_s": 2.0, "webserver_out_of_rotation_s": 3.0},
    }


def fault_matrix(report: dict) -> dict:
    """Per drill (rounds folded: `b-second-failover-r3` is b-second-failover): outage p50/max,
    failed requests, and how many rounds passed their bound."""
    rounds: dict[str, list[dict]] = {}
    for drill in report.get("drills", []):
        rounds.setdefault(re.sub(r"-r\d+$", "", drill["name"]), []).append(drill)
    matrix = {}
    for name, runs in sorted(rounds.items()):
        outages = [d["figures"]["outage_s"] for d in runs]
        bounded = [b for d in runs if (b := d["figures"].get(d.get("bounded", "outage_s"))) is not None]
        matrix[name] = {
            "rounds": len(runs),
            "passed": sum(bool(d["passed"]) for d in runs),
            "bound_s": runs[0]["bound_s"],
            "bounded_figure": runs[0].get("bounded", "outage_s"),
            "bounded_p50": statistics.median(bounded) if bounded else None,
            "bounded_max": max(bounded, default=None),
            "outage_p50_s": statistics.median(outages),
            "outage_max_s": max(outages),
            "failed_requests": [f"{d['figures']['failed']}/{d['figures']['total']}" for d in runs],
        }
    return matrix


def bench_faults(rounds: int, release: str, existing: Path | None) -> dict:
    """The fault matrix `rounds` times on one booted cluster (imgbuild verify --faults --rounds)."""
    # The run's report directory (report.json, report.html, the pictures, the HA logs) is kept
    # under reports/: a failed round is read there, not guessed at.
    report = verify_report(existing, "--release", release, "--faults", "--rounds", str(rounds), "--reports", "reports")
    return {
        "release": report.get("release", "bookworm"),
        "exit_code": report["exit_code"],
        "accel": report["accel"],
        "rounds": report.get("rounds"),
        "report_dir": report.get("report_dir"),
        "verify_total_s": report["total_seconds"],
        "failed_checks": {c["check"]: c["detail"][:300] for c in report["checks"] if c["outcome"] == "failed"},
        "drills": fault_matrix(report),
    }


def bench_deploy(work: Path) -> dict:
    """Whole-disk assembly and artefact sizes from the manifests, boot figures from tests/integration/test_deploy.py."""
    figures = json.loads((work / "deploy-figures.json").read_text())
    manifests = {role: json.loads((work / "images" / DEFAULT_RELEASE / role / "manifest.json").read_text()) for role in ("loadbalancer", "webserver")}
    return {
        "release": DEFAULT_RELEASE,
        "whole_disk_assembly_s": {role: m["disk_assembly_seconds"] for role, m in manifests.items()},
        "artefact_bytes": {role: {kind: a["bytes"] for kind, a in m["artefacts"].items()} for role, m in manifests.items()},
        "whole_disk_virtual_bytes": {role: m["artefacts"]["disk-qcow2"]["virtual_bytes"] for role, m in manifests.items()},
        **figures,
        "note": "boot-to-ready = QEMU start until cloud-init's final message and SSH; TCG, two VMs at a time for firmware, one for PXE",
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="build", choices=["build", "verify", "deploy", "faults"])
    parser.add_argument("given", nargs="*", help="verify: report.json files; deploy: the test work folder; faults: rounds or a report.json")
    parser.add_argument("--release", action="append", choices=RELEASES, help="repeatable; see above for the default")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    RESULTS.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="imgbuild-bench-", dir=os.environ.get("IMGBUILD_BENCH_DIR")))
    try:
        if args.which == "deploy":
            figures = bench_deploy(Path(args.given[0]) if args.given else Path("build/test"))
        elif args.which == "faults":
            given = args.given[0] if args.given else "5"
            release = (args.release or [DEFAULT_RELEASE])[0]
            figures = bench_faults(int(given), release, None) if given.isdigit() else bench_faults(0, release, Path(given))
        elif args.which == "verify" and args.given:  # reports of runs that already happened, keyed by their release
            reports = [Path(g) for g in args.given]
            figures = {"releases": {json.loads(r.read_text()).get("release", "bookworm"): bench_verify(scratch, "", r) for r in reports}}
        else:
            bench = bench_build if args.which == "build" else lambda scratch, release: bench_verify(scratch, release, None)
            figures = {"releases": {release: bench(scratch, release) for release in args.release or RELEASES}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (RESULTS / f"{args.which}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
