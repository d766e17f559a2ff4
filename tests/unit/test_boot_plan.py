"""How `imgbuild verify` and the boot tests start nodes: schedule and QEMU command line."""

from __future__ import annotations

import pytest

from imgbuild.bootargs import disk_cmdline
from imgbuild.model import Cluster, Role
from imgbuild.qemu.machine import BootSpec, Machine
from imgbuild.verify.cluster import boot_order, boot_slots


def test_web_servers_boot_first():
    order = boot_order(Cluster())
    roles = [n.role for n in order]
    assert roles == sorted(roles, key=lambda r: r != Role.webserver)
    assert {n.name for n in order} == {n.name for n in Cluster().nodes}


@pytest.mark.parametrize(
    ("accel", "cores", "cpus", "slots"),
    [("kvm", 2, 1, 4), ("tcg", 2, 1, 2), ("tcg", 2, 2, 1), ("tcg", 1, 2, 1), ("tcg", 8, 1, 8)],
)
def test_boot_slots(monkeypatch, accel, cores, cpus, slots):
    """Under TCG one vCPU per host core boots at a time; KVM boots every node at once."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert boot_slots(Cluster(), accel, cpus) == slots


@pytest.mark.parametrize(("accel", "randomised"), [("tcg", False), ("kvm", True)])
def test_emulated_direct_kernel_boots_go_without_address_randomisation(tmp_path, accel, randomised):
    """Under TCG it made every process start translate its libraries again (qemu/accel.py)."""
    kernel = BootSpec(image=tmp_path / "r.raw", kernel=tmp_path / "k", initrd=tmp_path / "i")
    command = Machine("n", kernel, tmp_path, accel).command()
    cmdline = command[command.index("-append") + 1].split()
    assert ("norandmaps" not in cmdline) == randomised
    assert cmdline[: len(disk_cmdline().split())] == disk_cmdline().split()


def test_firmware_boots_keep_the_images_own_arguments(tmp_path):
    """Whole disk and PXE boot as deployed: the bootloader's arguments, nothing added."""
    command = Machine("n", BootSpec(image=tmp_path / "d.qcow2"), tmp_path, "tcg").command()
    assert "-append" not in command
