"""The role images, built for real by diskimage-builder, inspected without booting them."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import IMGBUILD, run_imgbuild
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imgbuild.builder import imagefs
from imgbuild.builder.build import Manifest
from imgbuild.builder.elements import ARP_SYSCTLS_FILE, arp_sysctls, elements_dir
from imgbuild.model import ipvs_modules

pytestmark = pytest.mark.slow


def raw(images: Path, role: str) -> Path:
    return images / role / f"{role}.raw"


def text(image: Path, path: str) -> str:
    """A file the image must hold, as text."""
    content = imagefs.read_text(image, path)
    assert content is not None, f"{path}: not in the image"
    return content


@pytest.mark.parametrize("role", ["loadbalancer", "webserver"])
def test_sbom_lists_every_installed_package_and_artefact(images: Path, role: str) -> None:
    """A valid SPDX 2.3 document beside the artefacts: each installed package with a purl, each
    artefact with the checksum the manifest records."""
    manifest: Manifest = json.loads((images / role / "manifest.json").read_text())
    path = images / role / manifest["sbom"]["file"]
    document = parse_file(str(path))
    assert [m.validation_message for m in validate_full_spdx_document(document)] == []
    installed = imagefs.installed(raw(images, role))
    debs = document.packages[1:]
    assert len(debs) == len(installed) == manifest["sbom"]["packages"] > 100
    assert {p.name for p in debs} == set(manifest["packages"])
    assert all(ref.locator.startswith("pkg:deb/debian/") for p in debs for ref in p.external_references)
    licensed = [p for p in debs if str(p.license_declared) != "NOASSERTION"]
    assert len(licensed) == manifest["sbom"]["licensed"] > len(debs) // 2, "most Debian copyright files are DEP-5"
    sha256 = {
        str(f.name).removeprefix("./"): c.value
        for f in document.files
        for c in f.checksums
        if c.algorithm.name == "SHA256"
    }
    assert sha256 == {a["file"]: a["sha256"] for a in manifest["artefacts"].values()}


@pytest.mark.parametrize("role", ["loadbalancer", "webserver"])
def test_manifest_describes_every_artefact(images: Path, role: str) -> None:
    manifest: Manifest = json.loads((images / role / "manifest.json").read_text())
    assert set(manifest["artefacts"]) == {"qcow2", "raw", "kernel", "initrd", "squashfs", "disk-qcow2"}
    for entry in manifest["artefacts"].values():
        path = images / role / entry["file"]
        assert path.stat().st_size == entry["bytes"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if entry["bytes"] < 100_000_000 else None
        assert digest in (None, entry["sha256"])
    assert manifest["elements"] == ["debian-minimal", f"imgbuild-{role}"]
    assert manifest["diskimage_builder"] and manifest["build_seconds"] > 0
    assert "cloud-init" in manifest["packages"] and "openssh-server" in manifest["packages"]
    qemu_img = subprocess.run(
        ["qemu-img", "info", "--output=json", str(images / role / f"{role}.qcow2")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(qemu_img.stdout)["format"] == "qcow2"


def test_loadbalancer_contents(images: Path) -> None:
    image = raw(images, "loadbalancer")
    packages = imagefs.packages(image)
    assert {"heartbeat", "ldirectord", "ipvsadm", "ifupdown", "cloud-init"} <= set(packages)
    assert not {"pacemaker", "corosync", "apache2", "packagekit"} & set(packages)
    modules = text(image, "/etc/modules-load.d/imgbuild-ipvs.conf")
    # exactly what the kernel ships: every scheduler the model accepts for the release, nothing it lacks
    assert {line for line in modules.splitlines() if line and not line.startswith("#")} == ipvs_modules(images.name)
    assert "net.ipv4.ip_forward = 1" in text(image, "/etc/sysctl.d/60-imgbuild-director.conf")
    # heartbeat is enabled but gated on its configuration; ldirectord is left to heartbeat
    wants = imagefs.listdir(image, "/etc/systemd/system/multi-user.target.wants")
    assert "heartbeat.service" in wants and "lvs-sync-backup.service" in wants and "ldirectord.service" not in wants
    dropin = text(image, "/etc/systemd/system/heartbeat.service.d/10-imgbuild.conf")
    assert "ConditionPathExists=/etc/ha.d/authkeys" in dropin and "TimeoutStopSec=20s" in dropin
    assert imagefs.listdir(image, "/etc/ha.d") and imagefs.mode(image, "/etc/ha.d/authkeys") is None
    assert imagefs.mode(image, "/etc/ha.d/ha.cf") is None
    assert (imagefs.mode(image, "/etc/ha.d/resource.d/LVSSyncDaemonSwap") or 0) & 0o111
    assert (imagefs.mode(image, "/usr/libexec/heartbeat/ipfail") or 0) & 0o111


def test_webserver_contents(images: Path) -> None:
    image = raw(images, "webserver")
    packages = imagefs.packages(image)
    assert "apache2" in packages and not {"heartbeat", "ldirectord", "ipvsadm"} & set(packages)
    assert "Test Page" in text(image, "/var/www/html/ldirector.html")
    # the ARP sysctls the checks expect (verify reads the same element file), in the image as written
    sysctls = imagefs.read_text(image, "/etc/sysctl.d/60-imgbuild-lvs-dr.conf")
    assert sysctls == (elements_dir() / ARP_SYSCTLS_FILE).read_text()
    assert arp_sysctls() == {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2}
    assert "After=cloud-init.service" in text(image, "/etc/systemd/system/apache2.service.d/10-imgbuild.conf")


@pytest.mark.parametrize("role", ["loadbalancer", "webserver"])
def test_generic_image_holds_no_identity(images: Path, role: str) -> None:
    image = raw(images, role)
    assert not [n for n in imagefs.listdir(image, "/etc/ssh") if n.startswith("ssh_host_")]
    # Empty, not "uninitialized": either makes a fresh id, but the marker also makes systemd apply
    # every unit preset at boot (seconds under emulation).
    assert imagefs.read(image, "/etc/machine-id") == b""
    assert not [n for n in imagefs.listdir(image, "/etc/network/interfaces.d")], "no baked-in interface stanzas"
    datasources = text(image, "/etc/cloud/cloud.cfg.d/90-imgbuild-datasources.cfg")
    assert "NoCloud" in datasources and "ConfigDrive" in datasources and "OpenStack" in datasources
    # The PXE root is the same tree: no host keys and an empty machine-id there either.
    squashfs = images / role / f"{role}.squashfs"
    listing = subprocess.run(["unsquashfs", "-l", str(squashfs)], capture_output=True, text=True, check=True).stdout
    assert "/etc/ssh/sshd_config" in listing and "ssh_host_" not in listing
    # Only the diskless root brings eth0 up from the kernel's ip= with systemd-networkd.
    assert "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service" in listing
    assert "systemd-networkd.service" not in imagefs.listdir(image, "/etc/systemd/system/multi-user.target.wants")
    machine_id = subprocess.run(
        ["unsquashfs", "-cat", str(squashfs), "etc/machine-id"], capture_output=True, check=True
    ).stdout
    assert machine_id == b""


def test_cache_hit_is_fast(images: Path, test_env: dict[str, str]) -> None:
    started = time.monotonic()
    result = run_imgbuild("build", "--output", str(images.parent), "--json", env=test_env)
    assert result.returncode == 0 and time.monotonic() - started < 2.0
    assert "cached" in result.stderr


def test_a_rebuild_gives_the_same_bytes(images: Path, test_env: dict[str, str]) -> None:
    """`--check-reproducible` rebuilds the web server elsewhere from the same inputs and epoch: the same
    files, and every artefact the same bytes (issue 18)."""
    result = run_imgbuild(
        "build", "--role", "webserver", "--output", str(images.parent), "--check-reproducible", "--json", env=test_env
    )
    report = json.loads(result.stdout)["webserver"]["reproducibility"]
    if not report["packages_identical"]:
        pytest.skip("the mirror moved on between the two builds: other package versions, other bytes")
    assert report["tree_identical"], report["tree_differences"]
    assert {kind: a["why"] for kind, a in report["artefacts"].items() if not a["identical"]} == {}
    assert result.returncode == 0 and report["files"] > 10_000
    assert json.loads((images / "webserver.reproducibility.json").read_text()) == report
    assert not list(images.glob(".rebuild.*")), "the rebuild is removed"


def test_failed_build_leaves_previous_output(images: Path, test_env: dict[str, str]) -> None:
    before = (images / "webserver" / "manifest.json").read_bytes()
    env = dict(test_env, IMGBUILD_MIRROR="http://127.0.0.1:9/debian", IMGBUILD_SECURITY_MIRROR="http://127.0.0.1:9/sec")
    result = run_imgbuild("build", "--role", "webserver", "--output", str(images.parent), "--force", env=env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: mirror unreachable")
    assert (images / "webserver" / "manifest.json").read_bytes() == before
    assert not list(images.glob(".*.tmp"))


def test_interrupted_build_leaves_previous_output_and_no_loop_devices(
    images: Path, test_env: dict[str, str], tmp_path: Path
) -> None:
    before = (images / "webserver" / "manifest.json").read_bytes()
    loops_before = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    proc = subprocess.Popen(
        [*IMGBUILD, "build", "--role", "webserver", "--output", str(images.parent), "--force"],
        env=test_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as from a terminal, even under CI, where it may be ignored (an ignored signal stays ignored
        # across exec). No Popen option resets it (start_new_session does not); the child makes only this call
        # between fork and exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    time.sleep(45)  # well inside the build: packages are being installed in the chroot
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=180)
    assert proc.returncode != 0
    assert (images / "webserver" / "manifest.json").read_bytes() == before
    assert not list(images.glob(".*.tmp"))
    assert subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout == loops_before
    assert "dib_build" not in Path("/proc/mounts").read_text()
    assert "imgbuild-rootfs-" not in Path("/proc/mounts").read_text()


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--role", "database"], "error: unknown role 'database'; choose loadbalancer or webserver"),
        (
            ["--config", "/nonexistent.toml"],
            "error: /nonexistent.toml: no such file; write one with `imgbuild init /nonexistent.toml`",
        ),
    ],
)
def test_user_errors_are_one_line(args: list[str], line: str, test_env: dict[str, str], tmp_path: Path) -> None:
    """A mistake the user can fix (here a usage and a config error, exit 2): stderr is one line saying
    what is wrong and how to fix it, with no detail, usage block or traceback, and nothing is built.
    Errors with a detail (a log's tail) print it before this line (imgbuild.cli.user_errors)."""
    result = run_imgbuild("build", "--output", str(tmp_path), *args, env=test_env)
    assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", ""), result.stderr
    assert not any(tmp_path.iterdir())
