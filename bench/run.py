"""Benchmarks (not timed tests): build against plain diskimage-builder, and the cluster boot/verify figures.

    .venv/bin/python bench/run.py build [--release R]...   # -> bench/results/build.json, per release
    .venv/bin/python bench/run.py verify [--release R]... [reports/verify-*/report.json...]
        # -> verify.json, per release
    .venv/bin/python bench/run.py deploy [build/test]   # -> bench/results/deploy.json, from the test suite's run
    .venv/bin/python bench/run.py faults [--release R] [--stacks heartbeat,keepalived] [ROUNDS | report.json...]
        # -> faults.json
    .venv/bin/python bench/run.py idle [--advert-ms MS] [MINUTES]   # -> idle.json: keepalived's false failovers

Without --release, build and verify measure every release and faults the default one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from imgbuild import state
from imgbuild.builder import mirror, preflight
from imgbuild.builder.build import Manifest
from imgbuild.model import RELEASES, Cluster, Role
from imgbuild.run import failure, run

RESULTS = Path(__file__).parent / "results"
IMGBUILD = [str(Path(sys.executable).parent / "imgbuild")]
DEFAULT_RELEASE = Cluster().build.release
PLAIN_PACKAGES = "heartbeat,ldirectord,ipvsadm,apache2,cloud-init,ifupdown"


def timed(cmd: list[str], env: dict[str, str], log: Path) -> float:
    """Seconds cmd took; its output goes to log (and a failure names it)."""
    started = time.monotonic()
    done = run(cmd, env=env, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise failure(cmd, done.returncode, done.stderr, log_path=log)
    return round(time.monotonic() - started, 1)


# The element hooks that make a build reproducible (issue 18), as dib-run-parts times them in the build log.
SUPPLY_CHAIN_HOOKS = ("98-imgbuild-no-build-traces", "96-imgbuild-no-build-paths")
_HOOK_SECONDS = re.compile(r"dib-run-parts (\S+)\s+(\d+\.\d+)$", re.M)


def hook_seconds(log: Path) -> dict[str, float]:
    """Seconds each reproducibility hook took, from dib-run-parts' profiling table in a build log."""
    return {hook: float(s) for hook, s in _HOOK_SECONDS.findall(log.read_text()) if hook in SUPPLY_CHAIN_HOOKS}


def supply_chain_seconds(manifest: Manifest, images: Path) -> float:
    """Seconds a role's build spent on its SBOM and on being reproducible."""
    hooks = hook_seconds(images / f"{manifest['role']}.build.log")
    root = manifest["root_filesystems"]
    return round(manifest["sbom"]["seconds"] + sum(hooks.values()) + root["clamp_seconds"] + root["ext4_seconds"], 2)


def bench_build(scratch: Path, release: str) -> dict[str, Any]:
    """Both roles cold and from the cache, against a plain diskimage-builder image of the same release."""
    scratch = scratch / release
    scratch.mkdir()
    mirrors = mirror.resolve(release)
    env = dict(
        os.environ,
        PATH=preflight.tool_path(),
        DIB_RELEASE=release,
        DIB_DISTRIBUTION_MIRROR=mirrors.main,
        DIB_DEBIAN_SECURITY_MIRROR=mirrors.security,
        DIB_IMAGE_CACHE=str(scratch / "plain-cache"),
    )
    plain_out = scratch / "plain" / "image"
    plain_out.parent.mkdir()
    plain = timed(
        [
            "disk-image-create",
            "-a",
            "amd64",
            "-o",
            str(plain_out),
            "-t",
            "qcow2",
            "debian-minimal",
            "baremetal",
            "openssh-server",
            "-p",
            PLAIN_PACKAGES,
        ],
        env,
        scratch / "plain.log",
    )
    ours_env = dict(os.environ, IMGBUILD_CACHE=str(scratch / "imgbuild-cache"))
    out = scratch / "images"
    ours = [*IMGBUILD, "build", "--release", release, "--output", str(out)]
    cold = timed(ours, ours_env, scratch / "imgbuild-cold.log")
    hit = timed(ours, ours_env, scratch / "imgbuild-hit.log")
    check = run([*ours, "--check-reproducible", "--json"], env=ours_env, text=True, check=False)
    (scratch / "imgbuild-reproducible.log").write_text(check.stderr)
    reproducibility = {role: entry["reproducibility"] for role, entry in json.loads(check.stdout).items()}
    plain_qcow2 = plain_out.with_suffix(".qcow2").stat().st_size
    sizes = {role: (out / release / role / f"{role}.qcow2").stat().st_size for role in ("loadbalancer", "webserver")}
    manifests = {role: json.loads((out / release / role / "manifest.json").read_text()) for role in sizes}
    supply_chain = {role: supply_chain_seconds(m, out / release) for role, m in manifests.items()}
    return {
        "plain_dib_build_s": plain,
        "imgbuild_both_roles_cold_s": cold,
        "cold_ratio_to_plain": round(cold / plain, 2),
        "cache_hit_s": hit,
        "plain_qcow2_bytes": plain_qcow2,
        "qcow2_bytes": sizes,
        "qcow2_ratio_to_plain": {role: round(size / plain_qcow2, 3) for role, size in sizes.items()},
        "sbom_packages": {role: m["sbom"]["packages"] for role, m in manifests.items()},
        "sbom_licensed_packages": {role: m["sbom"]["licensed"] for role, m in manifests.items()},
        # the roles build in parallel: the SBOM's share of the cold build is its longest step
        "sbom_share_of_cold_build": round(max(m["sbom"]["seconds"] for m in manifests.values()) / cold, 4),
        "reproducible_tree": {role: r["tree_identical"] for role, r in reproducibility.items()},
        "reproducible_artefacts": {
            role: {kind: a["identical"] for kind, a in r["artefacts"].items()} for role, r in reproducibility.items()
        },
        "reproducible_why": {
            role: {kind: a["why"] for kind, a in r["artefacts"].items() if a["why"]}
            for role, r in reproducibility.items()
        },
        "rebuild_s": {role: r["rebuild_seconds"] for role, r in reproducibility.items()},
        # what the SBOM and reproducibility add to a role's build (the roles build in parallel): the SBOM,
        # the element hooks, clamping times and mke2fs -d (the squashfs was made before too)
        "supply_chain_s": supply_chain,
        "supply_chain_share_of_cold_build": round(max(supply_chain.values()) / cold, 4),
        "targets": {
            "cold_ratio_to_plain": 1.5,
            "cache_hit_s": 2.0,
            "qcow2_ratio_to_plain": 0.6,
            "supply_chain_share_of_cold_build": 0.1,
        },
    }


def verify_report(*args: str) -> dict[str, Any]:
    """The report of `imgbuild verify *args`."""
    report: dict[str, Any] = json.loads(run([*IMGBUILD, "verify", *args, "--json"], text=True, check=False).stdout)
    return report


def read_reports(paths: list[str], key: str, default: str) -> dict[str, dict[str, Any]]:
    """report.json files of runs that already happened (e.g. the test suite's), filed by their release or stack."""
    reports: list[dict[str, Any]] = [json.loads(Path(p).read_text()) for p in paths]
    return {r.get(key, default): r for r in reports}


def verify_figures(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "report_dir": report.get("report_dir"),
        "stack": report.get("stack", "heartbeat"),
        "with_fault_matrix": report.get("faults", False),
        "exit_code": report["exit_code"],
        "accel": report["accel"],
        "boot_to_ready_s": report.get("boot_seconds"),
        "cluster_ready_s": report.get("cluster_ready_seconds"),
        "verify_total_s": report["total_seconds"],
        "measurements": report.get("measurements"),
        "drills": {
            d["name"]: {"bound_s": d["bound_s"], "passed": d["passed"], **d["figures"]}
            for d in report.get("drills", [])
        },
        "targets": {
            "cluster_ready_s": 120,
            "verify_total_s": 300,
            "failover_outage_s": 2.0,
            "webserver_out_of_rotation_s": 3.0,
        },
    }


def fault_matrix(report: dict[str, Any]) -> dict[str, Any]:
    """Per drill (rounds folded: `b-second-failover-r3` is b-second-failover): outage p50/max,
    failed requests, and how many rounds passed their bound."""
    rounds: dict[str, list[dict[str, Any]]] = {}
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


def stack_config(scratch: Path, stack: str, **keepalived: int) -> Path:
    """A cluster file: the reference cluster on the given HA stack."""
    path = scratch / f"{stack}.toml"
    lines = ["[ha]", f'stack = "{stack}"', "[keepalived]", *(f"{k} = {v}" for k, v in keepalived.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_faults(rounds: int, release: str, config: Path) -> dict[str, Any]:
    """The fault matrix `rounds` times on one booted cluster (imgbuild verify --faults --rounds)."""
    # The run's report directory (report.json, report.html, the pictures, the HA logs) is kept
    # under reports/: a failed round is read there, not guessed at.
    return verify_report(
        "--config", str(config), "--release", release, "--faults", "--rounds", str(rounds), "--reports", "reports"
    )


def faults_figures(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "release": report.get("release", "bookworm"),
        "stack": report.get("stack", "heartbeat"),
        "exit_code": report["exit_code"],
        "accel": report["accel"],
        "rounds": report.get("rounds"),
        "report_dir": report.get("report_dir"),
        "verify_total_s": report["total_seconds"],
        "failed_checks": {c["check"]: c["detail"][:300] for c in report["checks"] if c["outcome"] == "failed"},
        "drills": fault_matrix(report),
    }


def side_by_side(per_stack: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per drill: outage p50/max and failed requests on each stack (None: not run there)."""
    drills = sorted({name for figures in per_stack.values() for name in figures["drills"]})
    rows = []
    for name in drills:
        row: dict[str, Any] = {"drill": name}
        for stack, figures in per_stack.items():
            m = figures["drills"].get(name)
            row[stack] = (
                None
                if m is None
                else {
                    "passed": f"{m['passed']}/{m['rounds']}",
                    "outage_p50_s": m["outage_p50_s"],
                    "outage_max_s": m["outage_max_s"],
                    m["bounded_figure"] + "_max": m["bounded_max"],
                    "failed_requests": m["failed_requests"],
                }
            )
        rows.append(row)
    return rows


def kept_ssh(cluster: Cluster) -> tuple[list[str], dict[str, str]]:
    """The argv prefix that runs a command on a node of a cluster left by `verify --keep`, and its nodes' addresses."""
    record = json.loads(state.read_private(state.cluster_dir(cluster.name) / "kept.json"))
    key, _ = state.admin_key(cluster.name)
    ssh = [
        "ip",
        "netns",
        "exec",
        record["netns"],
        "ssh",
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-l",
        cluster.admin.user,
    ]
    return ssh, record["nodes"]


def bench_idle(scratch: Path, minutes: float, advert_ms: int) -> dict[str, Any]:
    """keepalived's cluster left alone for `minutes`: every VRRP state change after it was ready
    (a backup that became master while the master ran is a false failover)."""
    config = stack_config(scratch, "keepalived", advert_ms=advert_ms)
    boot = run(
        [
            *IMGBUILD,
            "verify",
            "--config",
            str(config),
            "--keep",
            "-k",
            "vrrp_states",
            "--reports",
            str(scratch / "reports"),
            "--json",
        ],
        text=True,
        check=False,
    )
    try:
        report = json.loads(boot.stdout)
        assert report["exit_code"] == 0, report["checks"]
        ssh, nodes = kept_ssh(Cluster())

        def on(node: str, command: str) -> str:
            out: str = run([*ssh, nodes[node], command], text=True).stdout
            return out

        balancers = [n.name for n in Cluster().by_role(Role.loadbalancer)]
        started = {name: float(on(name, "date +%s.%N")) for name in balancers}  # each node's own clock
        time.sleep(minutes * 60)
        transitions = {}
        for name in balancers:
            log = on(name, "sudo journalctl -b -o short-unix --no-pager SYSLOG_FACILITY=16").splitlines()
            transitions[name] = [
                line
                for line in log
                if re.search(r"Entering \w+ STATE|advertisement timeout", line)
                and float(line.split()[0]) > started[name]
            ]
    finally:
        run([*IMGBUILD, "verify", "--config", str(config), "--down"], check=False)
    return {
        "advert_ms": advert_ms,
        "idle_minutes": minutes,
        "cluster_ready_s": report.get("cluster_ready_seconds"),
        "false_failovers": sum("Entering MASTER STATE" in line for lines in transitions.values() for line in lines),
        "state_changes_while_idle": transitions,
    }


def bench_deploy(work: Path) -> dict[str, Any]:
    """Whole-disk assembly and artefact sizes from the manifests, boot figures from tests/integration/test_deploy.py."""
    figures = json.loads((work / "deploy-figures.json").read_text())
    manifests: dict[str, Manifest] = {
        role: json.loads((work / "images" / DEFAULT_RELEASE / role / "manifest.json").read_text())
        for role in ("loadbalancer", "webserver")
    }
    return {
        "release": DEFAULT_RELEASE,
        "whole_disk_assembly_s": {role: m["disk_assembly_seconds"] for role, m in manifests.items()},
        "artefact_bytes": {
            role: {kind: a["bytes"] for kind, a in m["artefacts"].items()} for role, m in manifests.items()
        },
        "whole_disk_virtual_bytes": {
            role: m["artefacts"]["disk-qcow2"]["virtual_bytes"] for role, m in manifests.items()
        },
        **figures,
        "note": "boot-to-ready = QEMU start until cloud-init's final message and SSH; TCG, two VMs at a time for "
        "firmware, one for PXE",
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="build", choices=["build", "verify", "deploy", "faults", "idle"])
    parser.add_argument(
        "given",
        nargs="*",
        help="verify: report.json files; deploy: the test work folder; faults: rounds or a report.json",
    )
    parser.add_argument("--release", action="append", choices=RELEASES, help="repeatable; see above for the default")
    parser.add_argument("--stacks", default="heartbeat", help="faults: HA stacks, comma-separated, side by side")
    parser.add_argument(
        "--advert-ms", type=int, default=Cluster().keepalived.advert_ms, help="idle: keepalived's advert interval"
    )
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
            if given.isdigit():
                reports = {
                    stack: run_faults(int(given), release, stack_config(scratch, stack))
                    for stack in args.stacks.split(",")
                }
            else:
                reports = read_reports(args.given, "stack", "heartbeat")
            per_stack = {stack: faults_figures(report) for stack, report in reports.items()}
            figures = {"release": release, "stacks": per_stack, "side_by_side": side_by_side(per_stack)}
        elif args.which == "idle":
            figures = bench_idle(scratch, float(args.given[0]) if args.given else 10.0, args.advert_ms)
        elif args.which == "verify":
            if args.given:
                reports = read_reports(args.given, "release", "bookworm")
            else:
                reports = {
                    r: verify_report("--release", r, "--reports", str(scratch / "reports"))
                    for r in args.release or RELEASES
                }
            figures = {"releases": {release: verify_figures(report) for release, report in reports.items()}}
        else:
            figures = {"releases": {release: bench_build(scratch, release) for release in args.release or RELEASES}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    figures["measured_at"] = now
    path = RESULTS / f"{args.which}.json"
    if "releases" in figures and path.exists():
        # `--release` measures some releases: the others keep their figures, each with its own date
        for entry in figures["releases"].values():
            entry["measured_at"] = now
        kept = json.loads(path.read_text()).get("releases", {})
        figures["releases"] = {**kept, **figures["releases"]}
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
