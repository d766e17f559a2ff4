"""Deployment artefacts booted the way deployments boot them: firmware from the whole disk, PXE from the network."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import IMGBUILD, REPO, run_imgbuild

from imgbuild import model, state
from imgbuild.builder.build import read_manifest
from imgbuild.builder.openstack import RELEASE_VERSION
from imgbuild.model import Role
from imgbuild.paths import CONFIG_DRIVE_ISO, artefact, pxe_base_url, seed_dir
from imgbuild.qemu import netns
from imgbuild.qemu.accel import choose
from imgbuild.qemu.command import BootSpec, Firmware
from imgbuild.verify.cluster import node_machine
from imgbuild.verify.readiness import wait_until_ready
from imgbuild.verify.test_cluster import check_page_command

pytestmark = pytest.mark.slow
GIB = 1 << 30
CLUSTER = model.Cluster()


@pytest.fixture(scope="module")
def figures(work: Path) -> Iterator[dict[str, dict[str, float]]]:
    """Boot-to-ready figures of this module, merged into <work>/deploy-figures.json for bench/run.py deploy."""
    found: dict[str, dict[str, float]] = {}
    yield found
    path = work / "deploy-figures.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(old | found, indent=2) + "\n")


def test_manifest_lists_whole_disk_for_openstack(images: Path, test_env: dict[str, str]) -> None:
    for role in Role:
        manifest = read_manifest(images, role)
        assert manifest is not None, role
        disk = manifest["artefacts"]["disk-qcow2"]
        glance = manifest["openstack"]
        assert (
            glance["file"] == disk["file"] and glance["disk_format"] == "qcow2" and glance["container_format"] == "bare"
        )
        assert glance["min_disk"] * GIB >= disk["virtual_bytes"] and glance["min_ram"] == 512
        assert (
            glance["properties"]["os_distro"] == "debian"
            and glance["properties"]["os_version"] == RELEASE_VERSION[images.name]
        )
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(images / role.value / disk["file"])],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert info["virtual-size"] == disk["virtual_bytes"]
        result = run_imgbuild("openstack-args", "--role", role.value, "--output", str(images.parent), env=test_env)
        assert result.returncode == 0, result.stderr
        args = shlex.split(result.stdout)
        assert args[:3] == ["openstack", "image", "create"] and args[-1] == f"imgbuild-{role.value}"
        assert Path(args[args.index("--file") + 1]).is_file()
        assert f"hw_firmware_type={glance['properties']['hw_firmware_type']}" in args


# The firmware's own variable: 1 when it boots with Secure Boot enforcing.
SECURE_BOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
FIRMWARES: dict[str, tuple[Firmware, bool]] = {
    "bios": ("bios", False),
    "uefi": ("uefi", False),
    "secureboot": ("uefi", True),
}


def _firmware_boot(
    images: Path, seeds: Path, seg: netns.Segment, workdir: Path, label: str, name: str
) -> dict[str, Any]:
    firmware, secure_boot = FIRMWARES[label]
    node = CLUSTER.node(name)
    manifest = read_manifest(images, node.role)
    assert manifest is not None, node.role
    size = manifest["artefacts"]["disk-qcow2"]["virtual_bytes"] + GIB  # a flavour's disk, bigger than the image
    spec = BootSpec(
        artefact(images, node.role, "disk-qcow2"),
        seed_dir(seeds, node) / CONFIG_DRIVE_ISO,
        firmware=firmware,
        disk_size=size,
        secure_boot=secure_boot,
    )
    key, _ = state.admin_key(CLUSTER.name)
    tap = f"tap-{label[0]}{name[-1]}{name[0]}"
    machine = node_machine(
        CLUSTER, node, spec, workdir, choose("auto")[0], seg, tap, key, name=f"{label}-{name}", memory_mb=512
    )
    machine.start()
    try:
        seconds = wait_until_ready(machine, timeout=500)
        return {
            "seconds": seconds,
            "hostname": machine.succeed("hostname").strip(),
            "address": machine.succeed("ip -4 -o addr show dev eth0"),
            "efi": machine.execute("test -d /sys/firmware/efi")[0] == 0,
            "secure_boot": machine.execute(f"od -An -tu1 {SECURE_BOOT_VAR} 2>/dev/null")[1].split()[-1:] == ["1"],
            "lockdown": machine.execute("cat /sys/kernel/security/lockdown 2>/dev/null")[1].strip(),
            "disk": int(machine.succeed("blockdev --getsize64 /dev/vda")),
            "partition": int(machine.succeed("blockdev --getsize64 /dev/vda3")),
            "root": int(machine.succeed("df -B1 --output=size / | tail -1")),
            "root_source": machine.succeed("findmnt -no SOURCE /").strip(),
            "cloud_init": machine.succeed("cloud-init status --long"),
            "datasource": machine.succeed("cat /run/cloud-init/result.json"),
            "expected_size": size,
        }
    finally:
        machine.cleanup()


@pytest.mark.parametrize("label", list(FIRMWARES))
def test_whole_disk_boots_under_firmware(
    images: Path,
    seeds: Path,
    test_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: dict[str, dict[str, float]],
    label: str,
) -> None:
    """Both roles' whole disks boot under SeaBIOS, OVMF, and OVMF with Secure Boot enforcing (through
    Debian's signed shim, GRUB and kernel) with their config drive; root fills the bigger disk."""
    firmware, secure_boot = FIRMWARES[label]
    monkeypatch.setenv("IMGBUILD_STATE", test_env["IMGBUILD_STATE"])
    with (
        netns.segment(f"{netns.PREFIX}fw-{tmp_path.name[-6:]}", CLUSTER.network.subnet, CLUSTER.free_address()) as seg,
        netns.entered(seg.name),
        ThreadPoolExecutor(2) as pool,
    ):
        results = dict(
            zip(
                ["loadb1", "webserver1"],
                pool.map(lambda n: _firmware_boot(images, seeds, seg, tmp_path, label, n), ["loadb1", "webserver1"]),
                strict=True,
            )
        )
    for name, got in results.items():
        node = CLUSTER.node(name)
        assert got["hostname"] == name
        assert f"{node.address}/24" in got["address"]
        assert got["efi"] == (firmware == "uefi")
        assert got["secure_boot"] == secure_boot, f"{name}: Secure Boot {'off' if secure_boot else 'on'}"
        if secure_boot:  # the kernel knows it was booted verified, and locks itself down
            assert "[integrity]" in got["lockdown"] or "[confidentiality]" in got["lockdown"], got["lockdown"]
        assert got["disk"] == got["expected_size"]
        assert got["root_source"] == "/dev/vda3"
        assert got["partition"] > got["disk"] - 64 * (1 << 20), (
            f"root partition {got['partition']} does not fill the disk"
        )
        # df leaves out ext4's own metadata (inode tables, journal): about 10 % here.
        assert got["root"] > 0.85 * got["partition"], f"root filesystem {got['root']} was not grown to its partition"
        assert "status: done" in got["cloud_init"] and "ConfigDrive" in got["datasource"]
        figures.setdefault(f"{label}_boot_to_ready_s", {})[name] = round(got["seconds"], 1)


@pytest.fixture
def pxe_server(
    images: Path, seeds: Path, test_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[netns.Segment, Path]]:
    """A namespace with the cluster segment and `imgbuild pxe --serve` (HTTP, DHCP, TFTP) on it."""
    tree = tmp_path / "pxe"
    name = f"{netns.PREFIX}px-{tmp_path.name[-6:]}"
    with netns.segment(name, CLUSTER.network.subnet, CLUSTER.free_address()) as seg, netns.entered(seg.name):
        log = (tmp_path / "serve.log").open("w")
        server = subprocess.Popen(
            [
                *IMGBUILD,
                "pxe",
                "--output",
                str(images.parent),
                "--seeds",
                str(seeds),
                "--tree",
                str(tree),
                "--serve",
                "--interface",
                netns.BRIDGE,
            ],
            env=test_env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while "serving" not in (tmp_path / "serve.log").read_text():
                assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
            yield seg, tree
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            log.close()
            print((tmp_path / "serve.log").read_text()[-3000:])


def test_pxe_boot_from_served_tree(
    pxe_server: tuple[netns.Segment, Path],
    test_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: dict[str, dict[str, float]],
) -> None:
    """A diskless node with no kernel argument and no local seed boots by PXE and comes up as webserver2."""
    monkeypatch.setenv("IMGBUILD_STATE", test_env["IMGBUILD_STATE"])
    seg, tree = pxe_server
    node = CLUSTER.node("webserver2")
    assert (tree / "ipxe" / "webserver2.ipxe").is_file() and (tree / "pxelinux.cfg" / "01-52-54-c0-a8-00-66").is_file()
    assert (tree / "seeds").stat().st_mode & 0o077 == 0
    with urllib.request.urlopen(f"{pxe_base_url(CLUSTER)}/boot.ipxe", timeout=10) as reply:
        assert reply.read().startswith(b"#!ipxe")
    key, _ = state.admin_key(CLUSTER.name)
    machine = node_machine(
        CLUSTER,
        node,
        BootSpec(image=None),
        tmp_path,
        choose("auto")[0],
        seg,
        "tap-pxe",
        key,
        name="pxe-webserver2",
        memory_mb=1024,
    )
    machine.start()
    try:
        figures["pxe_boot_to_ready_s"] = {"webserver2": round(wait_until_ready(machine, timeout=500), 1)}
        assert machine.succeed("hostname").strip() == "webserver2"
        assert f"{node.address}/24" in machine.succeed("ip -4 -o addr show dev eth0")
        assert machine.succeed("findmnt -no FSTYPE /").strip() == "overlay"
        assert "boot=http" in machine.succeed("cat /proc/cmdline")
        assert "status: done" in machine.succeed("cloud-init status --long")
        assert "NoCloud" in machine.succeed("cat /run/cloud-init/result.json")
        machine.wait_for_unit("apache2")
        assert CLUSTER.balancer.check_receive in machine.succeed(check_page_command(CLUSTER.balancer))
        assert "192.168.0.105/32" in machine.succeed("ip -4 -o addr show dev lo")
        assert machine.succeed("systemctl list-units --failed --no-legend").strip() == ""
    finally:
        machine.cleanup()
